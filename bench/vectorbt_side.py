"""vectorbt's `Portfolio.from_signals` on the data of `bench/training.py`, in a process of its
own: vectorbt (a benchmark-only dependency, `requirements/bench.txt`) lives in `.venv-bench`
(`make bench-deps`), not in the project's virtualenv, where its dependencies (scikit-learn,
pandas) would be imported by Optuna's parameter importances and change a job's memory.

    .venv-bench/bin/python bench/vectorbt_side.py --bars 525600 --repeat 21 --sweep-pairs 200

Prints one JSON line: the median seconds of one backtest (sma_crossover's positions, 10 bps
fee) and of the sweep of (fast, slow) pairs, vectorised over `--sweep-chunk` columns a call."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from app.engine import indicators as ind
from app.engine.candles import synthetic
from app.engine.strategies import get_strategy

FEE = 0.001  # 10 bps a fill, as trad's side of the benchmark


def sweep_pairs(count: int, seed: int) -> list[tuple[int, int]]:
    """`count` distinct (fast, slow) pairs of sma_crossover's space, seeded."""
    rng = np.random.default_rng(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < count:
        fast = int(rng.integers(2, 201))
        pairs.add((fast, int(rng.integers(max(fast + 1, 5), 1001))))
    return sorted(pairs)


def portfolio_figures(vbt, candles, positions: np.ndarray):
    """`Portfolio.from_signals` on trad's model as near as vectorbt has it: the position decided
    on a bar's close filled at the next bar's open, long and short, all the cash each time, FEE
    of each fill's notional; then its total return, Sharpe ratio and maximum drawdown, as trad's
    backtest computes its metrics. `positions` may hold one column per configuration."""
    held = np.zeros_like(positions)
    held[1:] = positions[:-1]  # what trad holds during each bar
    long_, short = held == 1, held == -1
    columns = 1 if positions.ndim == 1 else positions.shape[1]
    close, open_ = candles.close, candles.open
    if columns > 1:
        close, open_ = np.repeat(close[:, None], columns, axis=1), np.repeat(open_[:, None], columns, axis=1)
    portfolio = vbt.Portfolio.from_signals(
        close,
        entries=long_,
        exits=~long_,
        short_entries=short,
        short_exits=~short,
        price=open_,
        fees=FEE,
        init_cash=1.0,
        freq="1min",
    )
    return portfolio.total_return(), portfolio.sharpe_ratio(), portfolio.max_drawdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--sweep-pairs", type=int, default=200)
    parser.add_argument("--sweep-repeat", type=int, default=3)
    parser.add_argument("--sweep-chunk", type=int, default=20)
    args = parser.parse_args()
    import vectorbt as vbt

    candles = synthetic(args.bars, args.seed)
    positions = get_strategy("sma_crossover").signals(candles, {"fast": 20, "slow": 200})
    portfolio_figures(vbt, candles, positions)  # warm: vectorbt compiles its own kernels
    one = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        portfolio_figures(vbt, candles, positions)
        one.append(time.perf_counter() - t)
    rolling = ind.Rolling(candles.close)
    pairs = sweep_pairs(args.sweep_pairs, 27)
    swept = []
    if pairs:  # warm: vectorbt compiles again for two-dimensional signals
        portfolio_figures(vbt, candles, np.stack([rolling.crossover(f, s) for f, s in pairs[:2]], axis=1))
    for _ in range(args.sweep_repeat if pairs else 0):
        t = time.perf_counter()
        for at in range(0, len(pairs), args.sweep_chunk):
            part = pairs[at : at + args.sweep_chunk]
            portfolio_figures(vbt, candles, np.stack([rolling.crossover(f, s) for f, s in part], axis=1))
        swept.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "version": vbt.__version__,
                "backtest_s": statistics.median(one),
                "sweep_s": statistics.median(swept) if swept else None,
            }
        )
    )


if __name__ == "__main__":
    main()
