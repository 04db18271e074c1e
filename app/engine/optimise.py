"""Parameter search with Optuna's TPE sampler, seeded, resumable from persisted trials.

A trial is feasible when its parameters are valid, it made at least `min_trades` trades and its
objective is defined. Infeasibility is told to the sampler as constraints (Optuna's
`Trial.set_constraint`; a value > 0 is a violation), so TPE learns to avoid those regions, and
such trials are recorded with `score=None` and the reason in words: no sentinel score exists.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from app.engine import stats
from app.engine.backtest import Costs
from app.engine.candles import Candles
from app.engine.errors import InvalidParams
from app.engine.ranges import ScoredRange, as_range
from app.engine.strategy import Param, Strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

OBJECTIVES = ("sharpe", "total_return", "calmar")


@dataclass
class TrialRecord:
    """One finished trial; JSON-safe, persisted by the caller as it finishes.

    `window` is the walk-forward window the trial belongs to (0 in holdout mode); `stats` holds
    the per-bar Sharpe ratio and the CSCV block sums used by the statistics of the search."""

    number: int
    params: dict[str, Any]
    score: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    feasible: bool = True
    reason: str | None = None
    duration_s: float | None = None
    window: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    score: float | None
    metrics: dict[str, Any]
    reason: str | None
    stats: dict[str, Any]


@dataclass
class OptimisationResult:
    trials: list[TrialRecord]
    importances: dict[str, float] = field(default_factory=dict)

    def feasible(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.feasible and t.score is not None]

    def top(self, k: int) -> list[TrialRecord]:
        return sorted(self.feasible(), key=lambda t: (-(t.score or 0.0), t.number))[:k]


def _defined(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def score_of(metrics: dict[str, Any], objective: str) -> float | None:
    """The objective's value, or None when it is undefined (no trades, no variation)."""
    if not metrics.get("n_trades"):
        return None
    return _defined(metrics.get(objective))


def ruined(metrics: dict[str, Any]) -> bool:
    """The account was wiped out (total return −100 %)."""
    total = metrics.get("total_return")
    return total is not None and total <= -1.0


def infeasibility(metrics: dict[str, Any], objective: str, min_trades: int) -> str | None:
    """Why a result cannot be chosen, or None. A ruined run is never chosen: whatever the
    objective says of it (a Sharpe ratio of a wiped-out account can beat a heavy loser's), it
    ranks below every run that kept its capital."""
    if ruined(metrics):
        return "ruined: equity reached zero"
    n_trades = int(metrics.get("n_trades") or 0)
    if n_trades < min_trades:
        return f"{n_trades} trades, fewer than the minimum of {min_trades}"
    if score_of(metrics, objective) is None:
        why = (metrics.get("null_reasons") or {}).get(objective)
        return f"{objective} is undefined" + (f" ({why})" if why else "")
    return None


def evaluate(
    scored: ScoredRange | Candles,
    strategy: Strategy,
    params: dict[str, Any],
    costs: Costs,
    objective: str,
    min_trades: int = 1,
) -> Evaluation:
    """Backtest `params` on the range's bars, with signals warmed on the history in front."""
    result = as_range(scored).backtest(strategy, params, costs)
    if result.bar_stats is None:
        returns = stats.bar_returns(result.equity)
        bar_stats = {"bar_sharpe": stats.sharpe(returns), "blocks": stats.block_sums(returns)}
    else:
        bar_stats = result.bar_stats  # measured by the compiled backtest on its way
    reason = infeasibility(result.metrics, objective, min_trades)
    return Evaluation(
        score=None if reason else score_of(result.metrics, objective),
        metrics=result.metrics,
        reason=reason,
        stats=bar_stats,
    )


def _suggest(trial: optuna.Trial, strategy: Strategy) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for spec in strategy.space:
        if spec.kind == "int":
            params[spec.name] = trial.suggest_int(spec.name, int(spec.low), int(spec.high))
        elif spec.kind == "float":
            params[spec.name] = trial.suggest_float(spec.name, spec.low, spec.high, log=spec.log)
        else:
            params[spec.name] = trial.suggest_categorical(spec.name, list(spec.choices))
    return params


def _distribution(spec: Param) -> optuna.distributions.BaseDistribution:
    if spec.kind == "int":
        return optuna.distributions.IntDistribution(int(spec.low), int(spec.high))
    if spec.kind == "float":
        return optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
    return optuna.distributions.CategoricalDistribution(list(spec.choices))


def _distributions(strategy: Strategy) -> dict[str, optuna.distributions.BaseDistribution]:
    return {s.name: _distribution(s) for s in strategy.space}


def _constraints(record: TrialRecord, min_trades: int) -> dict[str, float]:
    """Constraint values for the sampler: > 0 is a violation, and a larger one is worse."""
    n_trades = int(record.metrics.get("n_trades") or 0)
    return {
        "valid_params": 0.0 if record.metrics else 1.0,
        "min_trades": float(min_trades - n_trades) if record.metrics else float(min_trades),
        "defined_score": 0.0 if record.feasible else 1.0,
    }


def _replay(record: TrialRecord, distributions, min_trades: int) -> optuna.trial.FrozenTrial:
    feasible = record.feasible and record.score is not None
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if feasible else optuna.trial.TrialState.PRUNED,
        value=record.score if feasible else None,
        params=record.params,
        distributions=distributions,
        constraints=_constraints(record, min_trades),
    )


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances over the feasible trials; {} when not computable."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or len({tuple(sorted(t.params.items())) for t in complete}) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in found.items() if math.isfinite(v)}


def optimise(
    train: ScoredRange | Candles,
    strategy: Strategy,
    *,
    n_iterations: int,
    seed: int,
    objective: str,
    costs: Costs,
    completed: list[TrialRecord],
    on_trial: Callable[[TrialRecord], None],
    should_stop: Callable[[], None] | None = None,
    min_trades: int = 1,
    window: int = 0,
    first_number: int = 0,
) -> OptimisationResult:
    """Run trials until there are `n_iterations` in all. Trials in `completed` are replayed into
    the study (not re-run), so a resumed attempt continues where the last one stopped. Trial
    numbers start at `first_number` (walk-forward windows number their trials consecutively)."""
    if objective not in OBJECTIVES:
        raise InvalidParams(f"unknown objective {objective!r}")
    train = as_range(train)
    sampler = optuna.samplers.TPESampler(seed=seed + window * 7919 + len(completed))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = _distributions(strategy)
    records = sorted(completed, key=lambda t: t.number)
    for record in records:
        study.add_trial(_replay(record, distributions, min_trades))
    while len(records) < n_iterations:
        if should_stop is not None:
            should_stop()
        started = time.perf_counter()
        trial = study.ask()
        params = _suggest(trial, strategy)
        try:
            params = strategy.validate_params(params)
        except InvalidParams as exc:
            evaluation = Evaluation(None, {}, f"invalid parameters: {exc}", {})
        else:
            evaluation = evaluate(train, strategy, params, costs, objective, min_trades)
        record = TrialRecord(
            number=first_number + len(records),
            params=params,
            score=evaluation.score,
            metrics=evaluation.metrics,
            feasible=evaluation.reason is None,
            reason=evaluation.reason,
            window=window,
            stats=evaluation.stats,
        )
        for key, value in _constraints(record, min_trades).items():
            trial.set_constraint(key, value)
        if record.feasible:
            study.tell(trial, record.score)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        record.duration_s = time.perf_counter() - started
        records.append(record)
        on_trial(record)
    return OptimisationResult(records, importances(study))


def trial_sharpes(trials: list[TrialRecord]) -> list[float]:
    """Per-bar Sharpe ratios of the feasible trials: the variance of the DSR (its N is every trial run)."""
    return [float(t.stats["bar_sharpe"]) for t in trials if t.feasible and t.stats.get("bar_sharpe") is not None]


def block_matrix(trials: list[TrialRecord]) -> np.ndarray | None:
    """(trials, S, 3) block sums of the feasible trials, for CSCV; None if there are none."""
    rows = [t.stats["blocks"] for t in trials if t.feasible and t.stats.get("blocks")]
    return np.array(rows, dtype=np.float64) if rows else None
