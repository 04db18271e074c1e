"""How honest is the default validation? Two measurements, printed as figures:

1. Warm indicators (GOOG daily, sma_crossover): the pipeline trains on the first 80 % and
   reports the holdout. Beside what it reports, the same parameters are run on from the
   training range (one continuous run, sliced at the holdout's first bar): what a live run of
   those parameters would have made. An honest holdout reports the second figure.
2. A holdout touched once (Gaussian random walks: true Sharpe 0, 5m bars, no costs): the mean
   reported out-of-sample Sharpe over many walks, with its t statistic, beside the same
   parameters on as many fresh bars as the holdout has, continuing each walk. An honest holdout is indistinguishable
   from zero, like the fresh bars.

    .venv/bin/python bench/holdout.py [--goog PATH] [--walks 48] [--trials 60]

GOOG.csv is the daily file the `backtesting` package ships (`pip install backtesting`, a
benchmark-only dependency); without it the first measurement is skipped.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.backtest import Costs, backtest
from app.engine.candles import TIMEFRAMES, Candles
from app.engine.pipeline import TrainingSpec, run_training
from app.engine.strategies import get_strategy


class QuietHooks:
    def progress(self, *args, **kwargs):
        pass

    def completed_trials(self):
        return []

    def save_trial(self, trial):
        pass

    def check(self):
        pass


def goog_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    try:
        import backtesting
    except ImportError:
        return None
    return Path(backtesting.__file__).parent / "test" / "GOOG.csv"


def read_daily(path: Path) -> Candles:
    """pandas' to_csv layout: an unnamed date column, then Open, High, Low, Close, Volume."""
    rows = []
    with path.open() as f:
        reader = csv.reader(f)
        next(reader)
        for date, o, h, low, c, v in reader:
            when = datetime.strptime(date[:10], "%Y-%m-%d").replace(tzinfo=UTC)
            rows.append((int(when.timestamp() * 1000), float(o), float(h), float(low), float(c), float(v)))
    a = np.array(rows)
    return Candles("1d", a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])


def continued(data: Candles, params: dict, first: int, strategy: str, costs: Costs):
    """The parameters run continuously over all of `data`, scored from bar `first` on."""
    positions = get_strategy(strategy).signals(data, params)
    return backtest(data[first:], positions[first:], costs)


def warm_up_case(path: Path, trials: int) -> None:
    data = read_daily(path)
    costs = Costs()
    print(f"1. GOOG 1d ({len(data)} bars), sma_crossover, holdout 20 %, {trials} trials, seed 1")
    for params in ({"fast": 26, "slow": 182}, None):
        if params is None:
            spec = TrainingSpec("sma_crossover", "GOOG", "1d", trials, 1, min_trades=5)
            outcome = run_training(spec, data, QuietHooks())
            params, reported = outcome.params, outcome.validation_metrics
            label = "chosen by the pipeline"
        else:
            spec = TrainingSpec("sma_crossover", "GOOG", "1d", 1, 1, min_trades=1)
            reported = None
            label = "fast 26 / slow 182"
        first = round(len(data) * 0.8)
        live = continued(data, params, first, "sma_crossover", costs)
        if reported is None:
            reported = fixed_holdout(data, params, first, costs)
        flat = round((1 - reported["exposure"]) * reported["n_bars"])
        print(
            f"   {label} {params}: reported holdout return {reported['total_return']:+.1%} "
            f"(flat {flat} of {reported['n_bars']} bars); run on from training {live.metrics['total_return']:+.1%} "
            f"(flat {round((1 - live.metrics['exposure']) * live.metrics['n_bars'])})"
        )


def fixed_holdout(data: Candles, params: dict, first: int, costs: Costs) -> dict:
    """What the pipeline's holdout evaluation reports for fixed parameters."""
    strategy = get_strategy("sma_crossover")
    evaluate_range = getattr(strategy, "range_positions", None)
    if evaluate_range is not None:  # the warm evaluation
        positions = evaluate_range(data, params, first, len(data))
    else:  # the evaluation before warm-up existed: the holdout bars alone
        positions = strategy.signals(data[first:], params)
    return backtest(data[first:], positions, costs).metrics


def random_walk(n: int, rng: np.random.Generator, start_ms: int = 1_672_531_200_000) -> Candles:
    step = TIMEFRAMES["5m"]
    r = rng.normal(0.0, 0.002, n)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
    t = start_ms + step * np.arange(n, dtype=np.int64)
    return Candles("5m", t, open_, high, low, close, np.ones(n))


def walks_case(walks: int, trials: int, bars: int, strategy: str) -> None:
    reported, fresh = [], []
    for seed in range(walks):
        rng = np.random.default_rng(10_000 + seed)
        fresh_bars = bars - round(bars * 0.8)  # as many fresh bars as the holdout has
        both = random_walk(bars + fresh_bars, rng)
        train_part = both[:bars]
        spec = TrainingSpec(strategy, "RW", "5m", trials, seed, fee_bps=0.0, slippage_bps=0.0)
        try:
            outcome = run_training(spec, train_part, QuietHooks())
        except Exception as exc:  # a walk with no viable configuration is left out, and counted
            print(f"   walk {seed}: {type(exc).__name__}")
            continue
        if outcome.validation_metrics.get("sharpe") is not None:
            reported.append(outcome.validation_metrics["sharpe"])
        later = continued(both, outcome.params, bars, strategy, Costs(0.0, 0.0))
        if later.metrics.get("sharpe") is not None:
            fresh.append(later.metrics["sharpe"])
    print(f"2. {walks} Gaussian random walks, {bars} 5m bars each, {strategy}, {trials} trials, no costs")
    for label, xs in (("reported out-of-sample Sharpe", reported), ("same parameters on fresh bars", fresh)):
        mean = statistics.fmean(xs)
        sd = statistics.stdev(xs)
        t = mean / (sd / math.sqrt(len(xs)))
        positive = sum(x > 0 for x in xs)
        print(f"   {label}: mean {mean:+.2f}, sd {sd:.2f}, t {t:+.1f}, positive {positive} of {len(xs)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--goog", help="path of GOOG.csv (default: the one the backtesting package ships)")
    parser.add_argument("--walks", type=int, default=48)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--bars", type=int, default=4_000)
    parser.add_argument("--strategy", default="sma_crossover")
    args = parser.parse_args()
    path = goog_path(args.goog)
    if path is not None and path.exists():
        warm_up_case(path, args.trials)
    else:
        print("1. skipped: GOOG.csv not found (pip install backtesting, or --goog PATH)")
    walks_case(args.walks, args.trials, args.bars, args.strategy)


if __name__ == "__main__":
    main()
