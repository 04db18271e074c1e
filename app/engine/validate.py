"""Holdout validation, with the holdout touched once.

The configuration is chosen on the training range alone: the best training trial, or with
`folds` > 1 the one of the best `TOP_K` training trials whose mean score over that many
consecutive slices of the training range is highest (a preference for parameters that work
across the whole training period over ones that won on one stretch of it). The holdout then
scores that one configuration, once, and that score is the out-of-sample figure reported. No
choice is ever made on the holdout, so its figure is not flattered by selection.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.backtest import Costs
from app.engine.candles import Candles
from app.engine.optimise import TrialRecord, evaluate
from app.engine.ranges import for_strategy
from app.engine.strategy import Strategy

TOP_K = 5


def split_at(n_bars: int, holdout_fraction: float) -> int:
    """The first holdout bar's index."""
    return round(n_bars * (1.0 - holdout_fraction))


def split(candles: Candles, holdout_fraction: float) -> tuple[Candles, Candles]:
    cut = split_at(len(candles), holdout_fraction)
    return candles[:cut], candles[cut:]


def scaled_min_trades(min_trades: int, bars: int, training_bars: int) -> int:
    """The minimum number of trades for `bars` bars at the density asked of training (≥ 1)."""
    return max(1, math.ceil(min_trades * bars / max(1, training_bars)))


@dataclass
class Choice:
    trial: TrialRecord
    fold_scores: list[float | None]
    candidates: list[dict[str, Any]]

    @property
    def params(self) -> dict[str, Any]:
        return self.trial.params


def choose(
    data: Candles,
    train_end: int,
    strategy: Strategy,
    top: list[TrialRecord],
    *,
    objective: str,
    costs: Costs,
    folds: int = 0,
    should_stop: Callable[[], None] | None = None,
) -> Choice:
    """The configuration to validate, chosen on the training bars `data[:train_end]` only.
    `top` is the feasible training trials, best first. Without folds the best one wins; with
    `folds` > 1 each of the first `TOP_K` is scored on every fold (each warmed on the training
    bars before it) and the highest mean of its defined fold scores wins, ties going to the
    better training score. `should_stop` is called before each candidate (it raises to stop)."""
    if folds <= 1:
        best = top[0]
        return Choice(best, [], [{"trial": best.number, "train_score": best.score, "fold_mean": None}])
    ranges = [for_strategy(data, a, b, strategy) for a, b in fold_bounds(train_end, folds)]
    scored = []
    for record in top[:TOP_K]:
        if should_stop is not None:
            should_stop()
        fold_scores = [evaluate(r, strategy, record.params, costs, objective).score for r in ranges]
        defined = [s for s in fold_scores if s is not None]
        mean = float(np.mean(defined)) if defined else None
        scored.append((mean, record, fold_scores))
    ranked = sorted(scored, key=lambda c: (c[0] is None, -(c[0] or 0.0), -(c[1].score or 0.0), c[1].number))
    mean, best, fold_scores = ranked[0]
    summary = [{"trial": r.number, "train_score": r.score, "fold_mean": m} for m, r, _ in scored]
    return Choice(best, fold_scores, summary)


def fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b - a >= 2]
