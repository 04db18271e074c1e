"""The compiled backtest (`backtest`, app/engine/kernel.py) against the whole-array NumPy path
(`numpy_backtest`): the same equity, trades and metrics on random markets with ruin, flat
prices, gaps in time and stop exits, and the same errors for bad positions; the compiled
crossover signal against the NumPy means and signs, the compiled liquidity_sweep,
bollinger_breakout and rsi_reversion against their NumPy versions."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from app.engine import benchmark, pipeline, ranges, stats, strategies
from app.engine import indicators as ind
from app.engine.backtest import Costs, backtest, numpy_backtest
from app.engine.candles import Candles, synthetic
from app.engine.errors import InvalidPositions
from app.engine.pipeline import TrainingSpec, run_training
from app.engine.strategies import get_strategy
from tests.engine.test_backtest import flat_candles, market, stop_exits

SHARPE_RTOL = 1e-12  # compensated sums against NumPy's pairwise ones


def assert_same(fused, reference) -> None:
    np.testing.assert_array_equal(fused.equity, reference.equity)
    assert fused.trades.keys() == reference.trades.keys()
    for key, values in reference.trades.items():
        assert fused.trades[key].dtype == values.dtype, key
        np.testing.assert_array_equal(fused.trades[key], values, err_msg=key)
    got, want = dict(fused.metrics), dict(reference.metrics)
    sharpe, want_sharpe = got.pop("sharpe"), want.pop("sharpe")
    assert got == want
    if want_sharpe is None:
        assert sharpe is None
    else:
        assert sharpe == pytest.approx(want_sharpe, rel=SHARPE_RTOL, abs=1e-300)
    returns = stats.bar_returns(reference.equity)  # what the search's statistics take from a backtest
    bar_sharpe = stats.sharpe(returns)
    if bar_sharpe is None:
        assert fused.bar_stats["bar_sharpe"] is None
    else:
        assert fused.bar_stats["bar_sharpe"] == pytest.approx(bar_sharpe, rel=SHARPE_RTOL, abs=1e-300)
    blocks = stats.block_sums(returns)
    assert len(fused.bar_stats["blocks"]) == len(blocks)
    for got_block, want_block in zip(fused.bar_stats["blocks"], blocks, strict=True):
        assert got_block == pytest.approx(want_block, rel=SHARPE_RTOL, abs=1e-15)


@seed(27)
@settings(max_examples=400, deadline=None)
@given(data=market(), fee=st.floats(0, 50), slip=st.floats(0, 20), stops=st.sampled_from([None, 0.3, 1.0]))
def test_kernel_matches_numpy_path(data, fee, slip, stops):
    candles, positions = data
    exits = None if stops is None else stop_exits(candles, positions, len(positions), stops)
    costs = Costs(fee, slip)
    assert_same(backtest(candles, positions, costs, exits), numpy_backtest(candles, positions, costs, exits))


@seed(28)
@settings(max_examples=100, deadline=None)
@given(data=market(), as_float=st.booleans(), stops=st.sampled_from([None, 1.0]), cost=st.sampled_from([2500, 4900]))
def test_kernel_matches_numpy_path_for_float_positions_and_heavy_costs(data, as_float, stops, cost):
    """Costs of up to 50 % a fill: ruin by costs alone, at an exit or a stop."""
    candles, positions = data
    exits = None if stops is None else stop_exits(candles, positions, len(positions), stops)
    p = positions.astype(np.float64) if as_float else positions.astype(np.int64)
    costs = Costs(cost, 0)
    assert_same(backtest(candles, p, costs, exits), numpy_backtest(candles, p, costs, exits))


def held_in_runs(n: int, seed: int, dtype) -> np.ndarray:
    """Positions held for runs of 1 to 80 bars (the kernel marks a run's bars in one vector
    loop and finds its end eight one-byte positions at a time)."""
    rng = np.random.default_rng(seed)
    runs = [np.full(int(rng.integers(1, 81)), rng.choice([-1, 0, 1])) for _ in range(n)]
    return np.concatenate(runs)[:n].astype(dtype)


@seed(29)
@settings(max_examples=300, deadline=None)
@given(
    data=market(max_bars=400),
    dtype=st.sampled_from([np.int8, np.float64]),
    stops=st.sampled_from([None, 0.3]),
    cost=st.sampled_from([0, 10, 2500]),
)
def test_positions_held_for_runs_of_bars_match_the_numpy_path(data, dtype, stops, cost):
    """Ruin, a stop or a mark near zero can come in the middle of a run; a run can start or end
    anywhere against the eight-byte words."""
    candles, positions = data
    positions = held_in_runs(len(positions), len(positions) + cost, dtype)
    exits = None if stops is None else stop_exits(candles, positions, len(positions), stops)
    costs = Costs(cost, 0)
    assert_same(backtest(candles, positions, costs, exits), numpy_backtest(candles, positions, costs, exits))


@pytest.mark.parametrize("dtype", [np.int8, np.float64])
@pytest.mark.parametrize("bar", [1, 7, 8, 9, 63, 64, 150])
def test_a_bad_position_inside_a_run_is_named(dtype, bar):
    positions = np.ones(200, dtype=dtype)
    positions[bar] = 3
    with pytest.raises(InvalidPositions, match=f"position at bar {bar} is 3"):
        backtest(synthetic(200, 1), positions, Costs(10, 0))


def test_flat_prices_never_vary():
    c = flat_candles([100.0] * 500)
    positions = np.zeros(500, dtype=np.int8)
    fused, reference = backtest(c, positions, Costs()), numpy_backtest(c, positions, Costs())
    assert_same(fused, reference)
    assert fused.metrics["sharpe"] is None and fused.metrics["null_reasons"]["sharpe"] == "the returns do not vary"


def test_a_long_run_of_a_built_in_strategy_matches():
    """A year of 1-minute bars would be slow here; 50,000 bars of each built-in strategy."""
    candles = synthetic(50_000, 3)
    for name, params in (
        ("sma_crossover", {"fast": 20, "slow": 200}),
        ("bollinger_breakout", {"window": 100, "k": 2.0}),
        ("rsi_reversion", {"period": 14, "lower": 30.0, "upper": 70.0}),
        ("liquidity_sweep", {"lookback": 60, "stop_pct": 0.3, "max_hold": 120}),
    ):
        positions, exits = get_strategy(name).orders(candles, params)
        fused = backtest(candles, positions, Costs(10, 0), exits)
        assert_same(fused, numpy_backtest(candles, positions, Costs(10, 0), exits))
        assert fused.metrics["n_trades"] > 10, name


@pytest.mark.parametrize(
    ("positions", "bar", "shown"),
    [
        (np.array([0, 1, 2, 0], dtype=np.int8), 2, "2"),
        (np.array([0, 1, 0.5, 0]), 2, "0.5"),
        (np.array([0, math.nan, 1, 0]), 1, "nan"),
        (np.array([0, 7, 1, 0], dtype=np.int64), 1, "7"),
    ],
)
def test_a_bad_position_is_named_as_before(positions, bar, shown):
    c = flat_candles([100.0, 101.0, 102.0, 103.0])
    with pytest.raises(InvalidPositions, match=f"position at bar {bar} is {shown}") as fused:
        backtest(c, positions, Costs())
    with pytest.raises(InvalidPositions) as reference:
        numpy_backtest(c, positions, Costs())
    assert str(fused.value) == str(reference.value)


def test_a_short_almost_wiped_out_is_not_ruined():
    """Short at 100, marked at 197: 3 % of the equity is left, not 0; then out at 150."""
    c = flat_candles([100.0, 100.0, 197.0, 150.0, 150.0])
    positions = np.array([-1, -1, -1, 0, 0], dtype=np.int8)
    fused = backtest(c, positions, Costs(0, 0))
    assert_same(fused, numpy_backtest(c, positions, Costs(0, 0)))
    assert list(fused.equity) == pytest.approx([1.0, 1.0, 0.03, 0.5, 0.5])
    assert fused.metrics["total_return"] == pytest.approx(-0.5)


def test_a_bad_position_after_ruin_is_still_refused():
    """A short through a +300 % bar is ruined; positions after that are ignored but checked."""
    c = flat_candles([100.0, 100.0, 400.0, 400.0, 400.0])
    positions = np.array([-1, -1, 0, 0, 3], dtype=np.int8)
    with pytest.raises(InvalidPositions, match="position at bar 4 is 3"):
        backtest(c, positions, Costs(0, 0))
    positions[4] = 0
    fused = backtest(c, positions, Costs(0, 0))
    assert_same(fused, numpy_backtest(c, positions, Costs(0, 0)))
    assert fused.metrics["total_return"] == -1.0 and list(fused.trades["ret"]) == [-1.0]


CACHE_PROBE = """
import json, numpy as np
from app.engine.backtest import Costs, backtest
from app.engine.candles import synthetic
from app.engine import kernel
backtest(synthetic(2000, 1), np.ones(2000, dtype=np.int8), Costs())
print(json.dumps({"hits": sum(kernel.fused.stats.cache_hits.values()),
                  "misses": sum(kernel.fused.stats.cache_misses.values())}))
"""


def test_a_second_process_loads_the_compiled_kernel_from_the_cache_directory(tmp_path):
    """NUMBA_CACHE_DIR (the worker unit sets it to its CacheDirectory=): the first process
    compiles and writes there; the next one loads the machine code instead of compiling."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def probe() -> dict:
        done = subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert probe() == {"hits": 0, "misses": 1}
    assert list((tmp_path / "numba").rglob("*.nbi")), "the index was written to the cache directory"
    assert probe() == {"hits": 1, "misses": 0}


class _Trials:
    def __init__(self) -> None:
        self.saved: list[dict] = []

    def progress(self, *args, **kwargs) -> None:
        pass

    def completed_trials(self) -> list:
        return []

    def save_trial(self, trial) -> None:
        self.saved.append(dataclasses.asdict(trial) | {"duration_s": None})

    def check(self) -> None:
        pass


def assert_close(got, want, path: str = "") -> None:
    """Equal structure, strings, integers and None; floats within 1e-12 relative."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for key in want:
            assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300), path
    else:
        assert got == want, path


@pytest.mark.parametrize("strategy", ["sma_crossover", "liquidity_sweep"])
def test_a_seeded_training_chooses_and_reports_the_same_with_either_path(strategy, monkeypatch):
    """The same seed gives the same configuration, trials and metrics with the compiled kernel
    as with the NumPy path (the engine's results did not change with it)."""
    candles = synthetic(20_000, 7)
    spec = TrainingSpec(strategy, "X", "1m", 12, 3)
    fused_trials, reference_trials = _Trials(), _Trials()
    fused = dataclasses.asdict(run_training(spec, candles, fused_trials))
    for module in (pipeline, ranges, benchmark):
        monkeypatch.setattr(module, "backtest", numpy_backtest)
    reference = dataclasses.asdict(run_training(spec, candles, reference_trials))
    assert fused["params"] == reference["params"]
    assert [t["params"] for t in fused_trials.saved] == [t["params"] for t in reference_trials.saved]
    assert_close(fused_trials.saved, reference_trials.saved)
    for outcome in (fused, reference):  # the one wall-clock figure of a result
        assert outcome["bias_checks"].pop("seconds") > 0
    assert_close(fused, reference)


@st.composite
def closes(draw):
    """Random walks, constant stretches, and prices bouncing between two ticks (means equal in
    exact arithmetic), at price levels from cents to millions."""
    n = draw(st.integers(1, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from([0.01, 1.0, 100.0, 3e6]))
    kind = draw(st.sampled_from(["walk", "ticks", "flat"]))
    if kind == "walk":
        x = level * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    elif kind == "ticks":
        x = level + 0.01 * rng.integers(0, 2, n)
    else:
        x = np.full(n, level)
    if draw(st.booleans()):
        a = int(rng.integers(0, n))
        x[a : a + int(rng.integers(1, n + 1))] = x[a]  # a flat stretch
    return x


@seed(29)
@settings(max_examples=300, deadline=None)
@given(x=closes(), fast=st.integers(1, 60), extra=st.integers(0, 400))
def test_the_compiled_crossover_equals_the_numpy_signs(x, fast, extra):
    rolling = ind.Rolling(x)
    slow = fast + extra
    fast_mean, slow_mean = rolling.mean(fast), rolling.mean(slow)
    want = np.nan_to_num(ind.sign(fast_mean - slow_mean, slow_mean))
    got = rolling.crossover(fast, slow)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)


WARM_PROBE = """
import json, numpy as np
from app.engine import kernel
kernel.warm()
kernels = (kernel.fused, kernel.crossover, kernel.sweep, kernel.bollinger, kernel.rsi_states)
before = [len(k.signatures) for k in kernels]
from app.engine.backtest import Costs, backtest
from app.engine.candles import synthetic
from app.engine.strategies import get_strategy
c = synthetic(3000, 1)
for name, params in (("sma_crossover", {"fast": 5, "slow": 20}),
                     ("liquidity_sweep", {"lookback": 20, "stop_pct": 0.2, "max_hold": 30}),
                     ("bollinger_breakout", {"window": 20, "k": 2.0}),
                     ("rsi_reversion", {"period": 14, "lower": 30.0, "upper": 70.0})):
    positions, exits = get_strategy(name).orders(c, params)
    backtest(c, positions, Costs(), exits)
backtest(c, np.zeros(3000), Costs())
print(json.dumps([before, [len(k.signatures) for k in kernels]]))
"""


def test_warm_loads_every_signature_the_engine_uses(tmp_path):
    """After `kernel.warm()` (in a worker before it forks), a job compiles nothing more."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", WARM_PROBE], env=env, capture_output=True, text=True, check=True)
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == after and before[0] >= 2 and min(before[1:]) >= 1


PRELOAD_PROBE = """
import json
from app.worker import preload
preload()
from app.engine import kernel
print(json.dumps([len(k.signatures) for k in (kernel.fused, kernel.crossover, kernel.sweep, kernel.bollinger,
                                               kernel.rsi_states, kernel.log_ndtr_flat)]))
"""


def test_the_worker_preload_loads_the_kernels_before_any_job(tmp_path):
    """The worker calls `kernel.warm()` before it forks, so no job process loads or compiles."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", PRELOAD_PROBE], env=env, capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded[0] >= 2 and min(loaded) >= 1, loaded


@seed(30)
@settings(max_examples=200, deadline=None)
@given(
    data=market(max_bars=400),
    lookback=st.integers(1, 60),
    stop_pct=st.sampled_from([0.1, 1.0, 5.0, 10.0]),
    max_hold=st.integers(1, 50),
    start=st.integers(0, 100),
)
def test_the_compiled_liquidity_sweep_equals_the_numpy_one(data, lookback, stop_pct, max_hold, start):
    """Random walks with +300 % and −90 % bars (gaps through the stop), flat stretches."""
    candles, _ = data
    params = {"lookback": lookback, "stop_pct": stop_pct, "max_hold": max_hold}
    positions, exits = strategies._liquidity_sweep(candles, params, start)
    want_positions, want_exits = strategies._liquidity_sweep_numpy(candles, params, start)
    assert positions.dtype == np.int8
    np.testing.assert_array_equal(positions, want_positions)
    np.testing.assert_array_equal(exits, want_exits)


@seed(32)
@settings(max_examples=300, deadline=None)
@given(x=closes(), window=st.integers(1, 80), k=st.sampled_from([0.0, 0.5, 2.0, 4.0]), start=st.integers(0, 100))
def test_the_compiled_bollinger_breakout_equals_the_numpy_one(x, window, k, start):
    """Means, deviations, bands and states in one pass: walks, flat prices (a deviation of
    exactly 0), prices bouncing between two ticks, windows longer than the series."""
    t = 1_700_000_000_000 + 60_000 * np.arange(len(x), dtype=np.int64)
    candles = Candles("1m", t, x, x, x, x, np.ones(len(x)))
    params = {"window": window, "k": k}
    got = strategies._bollinger_breakout(candles, params, start)
    np.testing.assert_array_equal(got, strategies._bollinger_breakout_numpy(candles, params, start))


@seed(33)
@settings(max_examples=300, deadline=None)
@given(
    x=closes(),
    period=st.integers(2, 80),
    levels=st.sampled_from([(30.0, 70.0), (5.0, 95.0), (45.0, 55.0)]),
    start=st.integers(0, 100),
)
def test_the_compiled_rsi_reversion_equals_the_numpy_one(x, period, levels, start):
    """RSI from the rolling gains and losses and its held states: walks, flat prices (no
    moves: RSI 50), prices bouncing between two ticks."""
    t = 1_700_000_000_000 + 60_000 * np.arange(len(x), dtype=np.int64)
    candles = Candles("1m", t, x, x, x, x, np.ones(len(x)))
    params = {"period": period, "lower": levels[0], "upper": levels[1]}
    got = strategies._rsi_reversion(candles, params, start)
    np.testing.assert_array_equal(got, strategies._rsi_reversion_numpy(candles, params, start))
