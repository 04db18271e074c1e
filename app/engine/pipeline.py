"""A whole training run: data preparation, optimisation, validation. The caller saves the
result (the fourth phase) and supplies hooks for progress, trial persistence and stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from app.engine import ENGINE_VERSION
from app.engine.backtest import Costs, backtest
from app.engine.candles import TIMEFRAMES, Candles, resample
from app.engine.errors import TrainingInputError
from app.engine.optimise import OBJECTIVES, TrialRecord, optimise
from app.engine.strategies import get_strategy
from app.engine.validate import split, validate

MIN_BARS = 200


@dataclass(frozen=True)
class TrainingSpec:
    strategy: str
    symbol: str
    timeframe: str
    n_iterations: int
    seed: int
    objective: str = "sharpe"
    holdout_fraction: float = 0.2
    folds: int = 0
    fee_bps: float = 10.0
    slippage_bps: float = 2.0


class TrainingHooks(Protocol):
    def progress(
        self,
        phase: str,
        fraction: float,
        message: str,
        *,
        iteration: int | None = None,
        best_score: float | None = None,
        eta_seconds: float | None = None,
    ) -> None: ...

    def completed_trials(self) -> list[TrialRecord]: ...

    def save_trial(self, trial: TrialRecord) -> None: ...

    def check(self) -> None: ...


@dataclass
class TrainingOutcome:
    params: dict[str, Any]
    score: float
    train_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    overfit: bool
    overfit_reason: str | None
    equity_curve: list[list[float]]
    n_bars: int
    n_trials: int
    folds: dict[str, Any]
    train_range_ms: list[int]
    validation_range_ms: list[int]
    data_start_ms: int
    data_end_ms: int
    code_version: str = ENGINE_VERSION


def run_training(spec: TrainingSpec, candles: Candles, hooks: TrainingHooks) -> TrainingOutcome:
    strategy = get_strategy(spec.strategy)
    if spec.objective not in OBJECTIVES:
        raise TrainingInputError(f"unknown objective {spec.objective!r}")
    if spec.timeframe not in TIMEFRAMES:
        raise TrainingInputError(f"unknown timeframe {spec.timeframe!r}")
    costs = Costs(spec.fee_bps, spec.slippage_bps)

    # Phase 1: data preparation.
    hooks.check()
    data = resample(candles, spec.timeframe) if candles.timeframe != spec.timeframe else candles
    if len(data) < MIN_BARS:
        raise TrainingInputError(f"{len(data)} {spec.timeframe} bars is too few to train on (need {MIN_BARS})")
    train, holdout = split(data, spec.holdout_fraction)
    hooks.progress("data_preparation", 1.0, f"{len(train)} training and {len(holdout)} validation bars")

    # Phase 2: optimisation, one persisted trial at a time.
    completed = hooks.completed_trials()
    started, first = time.monotonic(), len(completed)
    best = max((t.score for t in completed if t.score is not None), default=None)

    def on_trial(trial: TrialRecord) -> None:
        nonlocal best
        hooks.save_trial(trial)
        if trial.score is not None and (best is None or trial.score > best):
            best = trial.score
        done = trial.number + 1
        rate = (time.monotonic() - started) / max(1, done - first)
        hooks.progress(
            "optimisation",
            done / spec.n_iterations,
            f"trial {done} of {spec.n_iterations}",
            iteration=done,
            best_score=best,
            eta_seconds=rate * (spec.n_iterations - done),
        )

    result = optimise(
        train,
        strategy,
        n_iterations=spec.n_iterations,
        seed=spec.seed,
        objective=spec.objective,
        costs=costs,
        completed=completed,
        on_trial=on_trial,
        should_stop=hooks.check,
    )

    # Phase 3: validation on the held-out tail.
    hooks.check()
    hooks.progress("validation", 0.0, "validating the best trials out of sample")
    top = result.top(5)
    if not top:
        raise TrainingInputError("no parameter set produced a single trade; try a longer range or another strategy")
    checked = validate(holdout, strategy, top, objective=spec.objective, costs=costs, folds=spec.folds)
    curve = backtest(holdout, strategy.signals(holdout, checked.params), costs).equity_curve()
    hooks.progress("validation", 1.0, "overfitting suspected" if checked.overfit else "validated")
    return TrainingOutcome(
        params=checked.params,
        score=checked.validation_score,
        train_metrics=checked.train_metrics,
        validation_metrics=checked.validation_metrics,
        overfit=checked.overfit,
        overfit_reason=checked.overfit_reason,
        equity_curve=curve,
        n_bars=len(data),
        n_trials=len(result.trials),
        folds={"k": spec.folds, "scores": checked.fold_scores, "candidates": checked.candidates},
        train_range_ms=[int(train.open_time[0]), int(train.open_time[-1])],
        validation_range_ms=[int(holdout.open_time[0]), int(holdout.open_time[-1])],
        data_start_ms=int(data.open_time[0]),
        data_end_ms=int(data.open_time[-1]),
    )
