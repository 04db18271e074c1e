"""Parameter search with Optuna's TPE sampler, seeded, resumable from persisted trials."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from app.engine.backtest import Costs, backtest
from app.engine.candles import Candles
from app.engine.errors import InvalidParams
from app.engine.strategies import Strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

OBJECTIVES = ("sharpe", "total_return", "calmar")
BAD_SCORE = -1e9  # a trial with no trades or an invalid combination


@dataclass
class TrialRecord:
    """One finished trial; JSON-safe, persisted by the caller as it finishes."""

    number: int
    params: dict[str, Any]
    score: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimisationResult:
    trials: list[TrialRecord]

    def top(self, k: int) -> list[TrialRecord]:
        scored = [t for t in self.trials if t.score is not None and t.score > BAD_SCORE]
        return sorted(scored, key=lambda t: (-t.score, t.number))[:k]


def score_of(metrics: dict[str, Any], objective: str) -> float:
    if metrics.get("n_trades", 0) == 0:
        return BAD_SCORE
    value = metrics.get(objective)
    return float(value) if value is not None and math.isfinite(value) else BAD_SCORE  # None: undefined


def evaluate(
    candles: Candles, strategy: Strategy, params: dict[str, Any], costs: Costs, objective: str
) -> tuple[float, dict[str, Any]]:
    metrics = backtest(candles, strategy.signals(candles, params), costs).metrics
    return score_of(metrics, objective), metrics


def _suggest(trial: optuna.Trial, strategy: Strategy) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for spec in strategy.space:
        if spec.kind == "int":
            params[spec.name] = trial.suggest_int(spec.name, int(spec.low), int(spec.high))
        else:
            params[spec.name] = trial.suggest_float(spec.name, spec.low, spec.high)
    return params


def _distributions(strategy: Strategy) -> dict[str, optuna.distributions.BaseDistribution]:
    return {
        s.name: optuna.distributions.IntDistribution(int(s.low), int(s.high))
        if s.kind == "int"
        else optuna.distributions.FloatDistribution(s.low, s.high)
        for s in strategy.space
    }


def optimise(
    train: Candles,
    strategy: Strategy,
    *,
    n_iterations: int,
    seed: int,
    objective: str,
    costs: Costs,
    completed: list[TrialRecord],
    on_trial: Callable[[TrialRecord], None],
    should_stop: Callable[[], None] | None = None,
) -> OptimisationResult:
    """Run trials until there are `n_iterations` in all. Trials in `completed` are replayed into
    the study (not re-run), so a resumed attempt continues where the last one stopped."""
    if objective not in OBJECTIVES:
        raise InvalidParams(f"unknown objective {objective!r}")
    sampler = optuna.samplers.TPESampler(seed=seed + len(completed))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = _distributions(strategy)
    records = sorted(completed, key=lambda t: t.number)
    for record in records:
        study.add_trial(
            optuna.trial.create_trial(
                params=record.params,
                distributions=distributions,
                value=record.score if record.score is not None else BAD_SCORE,
            )
        )
    while len(records) < n_iterations:
        if should_stop is not None:
            should_stop()
        trial = study.ask()
        params = _suggest(trial, strategy)
        try:
            params = strategy.validate_params(params)
            score, metrics = evaluate(train, strategy, params, costs, objective)
        except InvalidParams:
            score, metrics = BAD_SCORE, {}
        study.tell(trial, score)
        record = TrialRecord(number=len(records), params=params, score=score, metrics=metrics)
        records.append(record)
        on_trial(record)
    return OptimisationResult(records)
