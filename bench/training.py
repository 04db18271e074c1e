"""Benchmark a whole training run on one core: one year of synthetic 1-minute candles
(525,600 bars), 200 iterations, all four phases; then the same data in a 5-window walk-forward
(`--wf-iterations` trials per window; `--wf-windows 0` skips it).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/training.py

Prints wall time per phase, the bias checks' time against the whole job's (they run inside the
validation phase), backtests per second, peak RSS, and the speed of the vectorised backtester
against the per-bar reference loop (tests/engine/reference.py) on the same data, measured in
the same run. Before the job it measures one backtest (sma_crossover signals on
`--bars` bars, 10 bps fee) with the compiled kernel (`backtest`) and with the whole-array NumPy
path (`numpy_backtest`), alternated, median of `--repeat`, and the first call's time in a fresh
process with the kernel's cache warm (NUMBA_CACHE_DIR as the worker unit sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from app.engine import indicators as ind  # noqa: E402
from app.engine.backtest import Costs, backtest, numpy_backtest  # noqa: E402
from app.engine.candles import synthetic  # noqa: E402
from app.engine.pipeline import TrainingSpec, run_training  # noqa: E402
from app.engine.strategies import get_strategy  # noqa: E402
from tests.engine.reference import reference_backtest  # noqa: E402

FIRST_CALL = """
import time
t = time.perf_counter()
import numpy as np
from app.engine.backtest import Costs, backtest
from app.engine.candles import synthetic
c = synthetic(1000, 1)
t = time.perf_counter()
from app.engine import kernel  # numba itself
loaded = time.perf_counter()
backtest(c, np.ones(1000, dtype=np.int8), Costs(10, 0))
print(f"{loaded - t:.4f} {time.perf_counter() - loaded:.4f}")
"""


def first_call_s(cache_dir: str) -> tuple[float, float]:
    """Seconds to import numba with the kernel module, then of the first backtest in a fresh
    process: loading the compiled kernel from `cache_dir`, or compiling it when the cache is cold."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    done = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True)
    imported, first = done.stdout.split()[-2:]
    return float(imported), float(first)


def _means(rolling, params):
    """(fast − slow, slow): the NumPy means sma_crossover compared before the compiled crossover."""
    fast, slow = rolling.mean(params["fast"]), rolling.mean(params["slow"])
    return fast - slow, slow


def numpy_signals(candles, params):
    """sma_crossover's positions from whole-array NumPy means and signs: the same numbers as
    `strategy.signals`."""
    return np.nan_to_num(ind.sign(*_means(ind.Rolling(candles.close), params))).astype(np.int8)


def per_backtest(candles, repeat: int) -> None:
    """One backtest of sma_crossover (10 bps fee) on all the bars, compiled against NumPy,
    alternated in the same run: the backtest alone (positions made once), and signals +
    backtest (what a trial costs)."""
    strategy, params, costs = get_strategy("sma_crossover"), {"fast": 20, "slow": 200}, Costs(10, 0)
    positions = strategy.signals(candles, params)
    rolling = ind.Rolling(candles.close)
    assert np.array_equal(positions, numpy_signals(candles, params)), "the compiled crossover must not change signals"
    rows = {
        "backtest alone, compiled kernel": lambda: backtest(candles, positions, costs),
        "backtest alone, NumPy path": lambda: numpy_backtest(candles, positions, costs),
        "signals + backtest, compiled": lambda: backtest(candles, strategy.signals(candles, params), costs),
        "signals + backtest, NumPy": lambda: numpy_backtest(
            candles, np.nan_to_num(ind.sign(*_means(rolling, params))).astype(np.int8), costs
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for call in rows.values():  # warm: compile (or load) the kernels, build the prefix sums
        call()
    for _ in range(repeat):
        for name, call in rows.items():
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
    print(f"one backtest, sma_crossover on {len(candles)} bars, 10 bps fee (median of {repeat}):")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"  {name:<34} {median * 1000:7.2f} ms = {1 / median:7.1f} backtests/s")
    for compiled, numpy_path in (
        ("backtest alone, compiled kernel", "backtest alone, NumPy path"),
        (
            "signals + backtest, compiled",
            "signals + backtest, NumPy",
        ),
    ):
        print(f"  {compiled}: {medians[numpy_path] / medians[compiled]:.1f}x the NumPy figure's backtests/s")
    with tempfile.TemporaryDirectory() as cache:
        _, cold = first_call_s(cache)
        warm = [first_call_s(cache) for _ in range(3)]
    imported, first = statistics.median(w[0] for w in warm), statistics.median(w[1] for w in warm)
    print(
        f"  first call in a fresh process: {cold:.2f} s compiling; with a warm cache {first:.3f} s "
        f"(target ≤ 0.5 s), after {imported:.3f} s importing numba"
    )


class TimingHooks:
    def __init__(self) -> None:
        self.phase_started: dict[str, float] = {}
        self.trials = 0

    def progress(self, phase, fraction, message, **_):
        self.phase_started.setdefault(phase, time.perf_counter())

    def completed_trials(self):
        return []

    def save_trial(self, trial):
        json.dumps(trial.params), json.dumps(trial.metrics)
        self.trials += 1

    def check(self):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--strategy", default="sma_crossover")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wf-windows", type=int, default=5)
    parser.add_argument("--wf-iterations", type=int, default=200, help="trials per walk-forward window")
    parser.add_argument("--reference-bars", type=int, default=50_000, help="slice timed with the per-bar loop")
    parser.add_argument("--repeat", type=int, default=21, help="backtests per path for the per-backtest figure")
    args = parser.parse_args()

    t0 = time.perf_counter()
    candles = synthetic(args.bars, args.seed)
    generated = time.perf_counter()
    per_backtest(candles, args.repeat)
    hooks = TimingHooks()
    spec = TrainingSpec(args.strategy, "BENCH", "1m", args.iterations, args.seed)
    start = time.perf_counter()
    outcome = run_training(spec, candles, hooks)
    saving_start = time.perf_counter()
    json.dumps(
        {
            "params": outcome.params,
            "train": outcome.train_metrics,
            "validation": outcome.validation_metrics,
            "curve": outcome.equity_curve,
        }
    )
    end = time.perf_counter()
    marks = hooks.phase_started
    phases = {
        "data_preparation": marks["optimisation"] - start,
        "optimisation": marks["validation"] - marks["optimisation"],
        "validation": saving_start - marks["validation"],
        "saving": end - saving_start,
    }

    strategy = get_strategy(args.strategy)
    params = outcome.params
    ref_slice = candles[: args.reference_bars]
    positions = strategy.signals(ref_slice, params)
    vec_times = []
    for _ in range(5):
        t = time.perf_counter()
        backtest(ref_slice, positions, Costs())
        vec_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    reference_backtest(ref_slice, positions, Costs())
    ref_time = time.perf_counter() - t
    full_positions = strategy.signals(candles, params)
    full_times = []
    for _ in range(5):
        t = time.perf_counter()
        backtest(candles, strategy.signals(candles, params), Costs())
        full_times.append(time.perf_counter() - t)
    del full_positions

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bars: {args.bars}, iterations: {args.iterations}, strategy: {args.strategy}")
    print(f"synthetic data generated in {generated - t0:.2f} s (not part of the job)")
    for name, seconds in phases.items():
        print(f"  {name:<17} {seconds:7.2f} s")
    total = end - start
    print(f"whole job: {total:.2f} s (target ≤ 15 s)")
    checks = outcome.bias_checks["seconds"]
    print(
        f"bias checks (look-ahead at {len(outcome.bias_checks['lookahead']['bars_tried'])} bars, warm-up with "
        f"{outcome.bias_checks['warmup']['history_lengths']} bars of history): {checks:.3f} s = "
        f"{100 * checks / total:.1f} % of the job, {100 * checks / (total - checks):.1f} % added (target < 10 %)"
    )
    print(
        f"backtests per second (signals + backtest on {args.bars} bars, median of 5): "
        f"{1 / statistics.median(full_times):.1f}"
    )
    print(f"optimisation: {args.iterations / phases['optimisation']:.1f} trials/s including sampling")
    speedup = ref_time / statistics.median(vec_times)
    print(
        f"vectorised vs per-bar reference loop on the first {args.reference_bars} bars: "
        f"{statistics.median(vec_times) * 1000:.1f} ms vs {ref_time * 1000:.0f} ms = {speedup:.0f}x faster"
    )
    print(f"peak RSS: {peak_mb:.0f} MB (target ≤ 300 MB)")
    print(f"holdout statistics: {outcome.statistics['verdict']}")
    if args.wf_windows:
        wf_spec = TrainingSpec(
            args.strategy,
            "BENCH",
            "1m",
            args.wf_iterations,
            args.seed,
            validation_mode="walk_forward",
            windows=args.wf_windows,
        )
        t = time.perf_counter()
        wf = run_training(wf_spec, candles, TimingHooks())
        wf_time = time.perf_counter() - t
        print(
            f"walk-forward: {args.wf_windows} windows x {args.wf_iterations} trials = {wf.n_trials} trials "
            f"in {wf_time:.2f} s; walk-forward efficiency {wf.statistics['walk_forward_efficiency']}, "
            f"PBO {wf.statistics['pbo']}; bias checks of {wf.bias_checks['params_checked']} parameter sets "
            f"{wf.bias_checks['seconds']:.3f} s = {100 * wf.bias_checks['seconds'] / wf_time:.1f} % of it"
        )


if __name__ == "__main__":
    main()
