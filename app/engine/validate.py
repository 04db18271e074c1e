"""Out-of-sample validation: choose among the best training trials by their score on data the
optimiser never saw, and say when the result looks overfitted."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.backtest import Costs
from app.engine.candles import Candles
from app.engine.optimise import BAD_SCORE, TrialRecord, evaluate
from app.engine.strategies import Strategy

TOP_K = 5


def split(candles: Candles, holdout_fraction: float) -> tuple[Candles, Candles]:
    cut = round(len(candles) * (1.0 - holdout_fraction))
    return candles[:cut], candles[cut:]


@dataclass
class Validation:
    params: dict[str, Any]
    train_score: float
    validation_score: float
    train_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    fold_scores: list[float]
    overfit: bool
    overfit_reason: str | None
    candidates: list[dict[str, Any]]


def overfit_check(train_score: float, validation_score: float) -> str | None:
    """Flag likely overfitting: a positive training score that turns negative out of sample,
    or an out-of-sample score below half the training score."""
    if train_score > 0 and validation_score < 0:
        return f"validation score {validation_score:.3g} is negative while training scored {train_score:.3g}"
    if train_score > 0 and validation_score < 0.5 * train_score:
        return f"validation score {validation_score:.3g} is under half the training score {train_score:.3g}"
    return None


def validate(
    holdout: Candles, strategy: Strategy, top: list[TrialRecord], *, objective: str, costs: Costs, folds: int = 0
) -> Validation:
    """Score each of the top training trials on the holdout (and, with `folds` > 1, on that many
    consecutive slices of it, walk-forward style; their mean decides). Highest wins; ties go
    to the better training score."""
    if not top:
        raise ValueError("no usable training trial to validate")
    slices = [holdout[a:b] for a, b in _fold_bounds(len(holdout), folds)] if folds > 1 else []
    candidates = []
    for record in top[:TOP_K]:
        score, metrics = evaluate(holdout, strategy, record.params, costs, objective)
        fold_scores = [evaluate(s, strategy, record.params, costs, objective)[0] for s in slices]
        decide = float(np.mean(fold_scores)) if fold_scores else score
        candidates.append((decide, record, score, metrics, fold_scores))
    candidates.sort(key=lambda c: (-c[0], -(c[1].score or BAD_SCORE), c[1].number))
    _, best, score, metrics, fold_scores = candidates[0]
    reason = overfit_check(best.score or 0.0, score)
    return Validation(
        params=best.params,
        train_score=float(best.score or 0.0),
        validation_score=float(score),
        train_metrics=best.metrics,
        validation_metrics=metrics,
        fold_scores=fold_scores,
        overfit=reason is not None,
        overfit_reason=reason,
        candidates=[{"trial": c[1].number, "train_score": c[1].score, "validation_score": c[2]} for c in candidates],
    )


def _fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b - a >= 2]
