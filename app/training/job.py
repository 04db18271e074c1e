"""The `training` job kind: load candles, run the engine through its phases with progress and
trial persistence, and save exactly one configuration.

Phases and their share of the progress bar: data preparation 0–25 %, optimisation 25–75 %,
validation 75–95 %, saving 95–100 %.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.engine import errors as engine_errors
from app.engine import registry
from app.engine.errors import TrainingInputError
from app.engine.optimise import TrialRecord
from app.engine.pipeline import TrainingOutcome, TrainingSpec, run_training
from app.engine.report import json_safe
from app.engine.strategy import Strategy
from app.execution.context import JobContext
from app.execution.errors import Fenced, JobInputError
from app.release import current_code_version
from app.repositories import configurations as configurations_repo
from app.repositories import trials as trials_repo
from app.services import candles as candles_service

PHASES: dict[str, tuple[float, float]] = {
    "data_preparation": (0.0, 25.0),
    "optimisation": (25.0, 75.0),
    "validation": (75.0, 95.0),
    "saving": (95.0, 100.0),
}


def overall_percent(phase: str, fraction: float) -> float:
    lo, hi = PHASES[phase]
    return lo + (hi - lo) * max(0.0, min(1.0, fraction))


class JobHooks:
    """The engine's TrainingHooks, backed by PostgreSQL through the job's context."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    def progress(
        self,
        phase: str,
        fraction: float,
        message: str,
        *,
        iteration: int | None = None,
        best_score: float | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        self.ctx.progress(
            overall_percent(phase, fraction),
            phase,
            message,
            iteration=iteration,
            best_score=best_score,
            eta_seconds=eta_seconds,
        )

    def completed_trials(self) -> list[TrialRecord]:
        rows = self.ctx.run(lambda s: trials_repo.for_job(s, self.ctx.job_id))
        return [
            TrialRecord(
                number=r.number,
                params=r.params,
                score=r.score,
                metrics=r.metrics,
                feasible=r.feasible,
                reason=r.reason,
                duration_s=r.duration_s,
                window=r.window,
                stats=r.stats,
            )
            for r in rows
        ]

    def save_trial(self, trial: TrialRecord) -> None:
        """Persist a finished trial, only while this attempt still owns the job; a trial number
        already stored (an earlier attempt got that far) is kept as it is."""

        def write(session: Session) -> None:
            if not self.ctx.owns(session):
                raise Fenced("this attempt is no longer the job's current attempt")
            trials_repo.add_once(
                session,
                job_id=self.ctx.job_id,
                attempt_id=self.ctx.attempt_id,
                number=trial.number,
                params=trial.params,
                score=trial.score,
                metrics=json_safe(trial.metrics),
                feasible=trial.feasible,
                reason=trial.reason,
                duration_s=trial.duration_s,
                window=trial.window,
                stats=json_safe(trial.stats),
            )

        self.ctx.run(write)

    def check(self) -> None:
        self.ctx.check()


_FLOATS = ("holdout_fraction", "fee_bps", "slippage_bps")


def spec_from_params(params: dict) -> TrainingSpec:
    """The job's spec; what its parameters leave out is `TrainingSpec`'s default (a job accepted
    before costs could be named runs at the engine's default costs)."""
    validation = params.get("validation") or {}
    given = {
        "objective": params.get("objective"),
        "holdout_fraction": params.get("holdout_fraction"),
        "folds": params.get("folds"),
        "min_trades": params.get("min_trades"),
        "fee_bps": params.get("fee_bps"),
        "slippage_bps": params.get("slippage_bps"),
        "validation_mode": validation.get("mode"),
        "windows": validation.get("windows"),
        "anchored": validation.get("anchored"),
    }
    return TrainingSpec(
        strategy=params["strategy"],
        symbol=params["symbol"],
        timeframe=params["timeframe"],
        n_iterations=int(params["n_iterations"]),  # per walk-forward window
        seed=int(params["seed"]),
        params=params.get("params"),
        **{name: float(v) if name in _FLOATS else v for name, v in given.items() if v is not None},
    )


class NoViableConfiguration(JobInputError):
    """The search found nothing worth saving: the job fails, and is not retried."""


class StrategyUnavailable(JobInputError):
    """This worker lacks the job's strategy, or has another version of it: not retried here."""


class StrategyError(JobInputError):
    """The strategy's own code raised."""


class InvalidPositions(JobInputError):
    """The strategy returned positions that are not one of −1, 0, 1 per candle (NaN included)."""


class LookaheadBias(JobInputError):
    """The chosen parameters' positions read bars after the one they decide on (engine `bias`):
    nothing is saved, and the job is not retried."""


class WarmupTooShort(JobInputError):
    """The chosen parameters' positions need more history than the strategy declares (engine
    `bias`): nothing is saved, and the job is not retried."""


# Engine errors a job fails with under their own name (the job's error type); any other
# TrainingInputError fails it as JobInputError. None is retried.
NAMED_ERRORS: dict[type[TrainingInputError], type[JobInputError]] = {
    engine_errors.NoViableConfiguration: NoViableConfiguration,
    engine_errors.StrategyUnavailable: StrategyUnavailable,
    engine_errors.StrategyError: StrategyError,
    engine_errors.InvalidPositions: InvalidPositions,
    engine_errors.LookaheadBias: LookaheadBias,
    engine_errors.WarmupTooShort: WarmupTooShort,
}


def _named(exc: TrainingInputError) -> JobInputError:
    for engine_error, job_error in NAMED_ERRORS.items():
        if isinstance(exc, engine_error):
            return job_error(str(exc))
    return JobInputError(str(exc))


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value is not None else None


def run_training_job(ctx: JobContext):
    params = ctx.params
    spec = spec_from_params(params)
    try:  # the strategy and version the job was started with, or it fails here, before any work
        strategy = registry.for_job(
            spec.strategy, params.get("strategy_package"), params.get("strategy_version"), _where(ctx)
        )
    except TrainingInputError as exc:
        raise _named(exc) from exc
    hooks = JobHooks(ctx)
    hooks.progress("data_preparation", 0.0, "loading candles")
    start, end = _parse_time(params.get("start")), _parse_time(params.get("end"))
    chunk = ctx.settings.candle_chunk_bars
    candles = ctx.run(
        lambda s: candles_service.load(
            s, spec.symbol, spec.timeframe, start, end, chunk_bars=chunk, between_chunks=ctx.check
        )
    )
    if candles is None or len(candles) == 0:
        raise JobInputError(
            f"no candles for {spec.symbol} {spec.timeframe} in the requested range; "
            f"import some with `trad candles import`"
        )
    done = hooks.completed_trials()
    if done:
        ctx.set_resumed_from(len(done))
    try:
        outcome = run_training(spec, candles, hooks)
    except TrainingInputError as exc:
        raise _named(exc) from exc
    hooks.progress("saving", 0.0, "saving the configuration")
    return _writer(ctx.job_id, spec, outcome, strategy)


def _where(ctx: JobContext) -> str:
    return f"worker {ctx.worker_name}" if ctx.worker_name else "this worker"


def _writer(job_id: uuid.UUID, spec: TrainingSpec, outcome: TrainingOutcome, strategy: Strategy):
    def write(session: Session) -> None:
        configurations_repo.add(
            session,
            job_id=job_id,
            strategy=spec.strategy,
            strategy_package=strategy.package,
            strategy_version=strategy.version,
            symbol=spec.symbol,
            timeframe=spec.timeframe,
            params=json_safe(outcome.params),
            objective=spec.objective,
            score=outcome.score,
            train_metrics=json_safe(outcome.train_metrics),
            validation_metrics=json_safe(outcome.validation_metrics),
            overfit=outcome.overfit,
            overfit_reason=outcome.overfit_reason,
            details=json_safe(
                {
                    "validation_mode": outcome.validation_mode,
                    "min_trades": outcome.min_trades,
                    "equity_curve": outcome.equity_curve,
                    "validation_start": outcome.validation_start_ms,
                    "windows": outcome.windows,
                    "trades": outcome.trades,
                    "benchmark_metrics": outcome.benchmark_metrics,
                    "excess": outcome.excess,
                    "statistics": outcome.statistics,
                    "param_importances": outcome.param_importances,
                    "n_bars": outcome.n_bars,
                    "n_trials": outcome.n_trials,
                    "train_range_ms": outcome.train_range_ms,
                    "validation_range_ms": outcome.validation_range_ms,
                    "folds": outcome.folds,
                    "fee_bps": spec.fee_bps,
                    "slippage_bps": spec.slippage_bps,
                    "holdout_fraction": spec.holdout_fraction,
                    "bias_checks": outcome.bias_checks,
                }
            ),
            data_start=_ms(outcome.data_start_ms),
            data_end=_ms(outcome.data_end_ms),
            seed=spec.seed,
            code_version=current_code_version(),
        )

    return write
