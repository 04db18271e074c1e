"""Holdout validation: choose among the best feasible training trials by their score on data the
optimiser never saw. A candidate must trade out of sample with a defined score to be chosen."""

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
from app.engine.strategies import Strategy

TOP_K = 5


def split(candles: Candles, holdout_fraction: float) -> tuple[Candles, Candles]:
    cut = round(len(candles) * (1.0 - holdout_fraction))
    return candles[:cut], candles[cut:]


def scaled_min_trades(min_trades: int, bars: int, training_bars: int) -> int:
    """The minimum number of trades for `bars` bars at the density asked of training (≥ 1)."""
    return max(1, math.ceil(min_trades * bars / max(1, training_bars)))


@dataclass
class Validation:
    params: dict[str, Any]
    train_score: float | None
    validation_score: float | None
    train_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    fold_scores: list[float | None]
    candidates: list[dict[str, Any]]
    trial: TrialRecord


def validate(
    holdout: Candles,
    strategy: Strategy,
    top: list[TrialRecord],
    *,
    objective: str,
    costs: Costs,
    folds: int = 0,
    min_trades: int = 1,
    should_stop: Callable[[], None] | None = None,
) -> Validation | None:
    """Score each of the top training trials on the holdout (and, with `folds` > 1, on that many
    consecutive slices of it; their mean decides). Only candidates with at least `min_trades`
    holdout trades and a defined score qualify; highest wins, ties go to the better training
    score. None when no candidate qualifies. `should_stop` is called before each candidate (it
    raises to stop), so a stop waits for one candidate's backtests at most."""
    slices = [holdout[a:b] for a, b in _fold_bounds(len(holdout), folds)] if folds > 1 else []
    candidates = []
    for record in top[:TOP_K]:
        if should_stop is not None:
            should_stop()
        checked = evaluate(holdout, strategy, record.params, costs, objective, min_trades)
        fold_scores = [evaluate(s, strategy, record.params, costs, objective).score for s in slices]
        defined = [s for s in fold_scores if s is not None]
        decide = float(np.mean(defined)) if slices and defined else checked.score
        candidates.append((decide, record, checked, fold_scores))
    summary = [
        {
            "trial": c[1].number,
            "train_score": c[1].score,
            "validation_score": c[2].score,
            "validation_trades": int(c[2].metrics.get("n_trades") or 0),
            "reason": c[2].reason,
        }
        for c in candidates
    ]
    qualified = [c for c in candidates if c[0] is not None and c[2].reason is None]
    if not qualified:
        return None
    qualified.sort(key=lambda c: (-c[0], -(c[1].score or 0.0), c[1].number))
    _, best, checked, fold_scores = qualified[0]
    return Validation(
        params=best.params,
        train_score=best.score,
        validation_score=checked.score,
        train_metrics=best.metrics,
        validation_metrics=checked.metrics,
        fold_scores=fold_scores,
        candidates=summary,
        trial=best,
    )


def _fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b - a >= 2]
