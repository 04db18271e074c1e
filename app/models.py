"""Typed SQLAlchemy 2 models: the tables that are the source of truth."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.status import AttemptStatus, FireOutcome, JobStatus, MisfirePolicy, OverlapPolicy, Priority

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        uuid.UUID: UUID(as_uuid=True),
    }


class Job(Base):
    """A unit of work a user asked for. Its row is the truth about it."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        CheckConstraint(_in("priority", Priority), name="priority"),
        CheckConstraint("percent >= 0 AND percent <= 100", name="percent"),
        Index("ix_training_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    priority: Mapped[str] = mapped_column(String(8), default=Priority.NORMAL)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))

    phase: Mapped[str | None] = mapped_column(String(32))
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    iteration: Mapped[int | None] = mapped_column(Integer)
    n_iterations: Mapped[int | None] = mapped_column(Integer)
    best_score: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    resumed_from_iteration: Mapped[int | None] = mapped_column(Integer)
    last_progress_at: Mapped[datetime | None]

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    current_attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    rq_job_id: Mapped[str | None] = mapped_column(String(80))
    enqueued_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]

    error_type: Mapped[str | None] = mapped_column(String(120))
    error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]

    @hybrid_method
    def owned_by(self, attempt_id: int) -> bool:
        """This attempt still owns the job: the job is running and it is its current attempt.
        Every write an attempt makes is fenced on this, in Python and in SQL alike."""
        return self.status == JobStatus.RUNNING and self.current_attempt_id == attempt_id

    @owned_by.expression
    def _owned_by_expression(cls, attempt_id: int):
        return (cls.status == JobStatus.RUNNING) & (cls.current_attempt_id == attempt_id)


class Attempt(Base):
    """One run of a job by one worker. A job may have several; each has its own row."""

    __tablename__ = "training_attempts"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_training_attempts_job_id_number"),
        CheckConstraint(_in("status", AttemptStatus), name="status"),
        Index("ix_training_attempts_status_heartbeat_at", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=AttemptStatus.RUNNING)
    worker_name: Mapped[str | None] = mapped_column(String(120))
    pid: Mapped[int | None] = mapped_column(Integer)
    start_iteration: Mapped[int] = mapped_column(Integer, default=0)
    error_type: Mapped[str | None] = mapped_column(String(120))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]


class ProgressEvent(Base):
    """History of progress reports, one row per report."""

    __tablename__ = "training_progress"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("training_attempts.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(32))
    percent: Mapped[float] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    iteration: Mapped[int | None] = mapped_column(Integer)
    best_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Trial(Base):
    """One completed optimisation trial, persisted as it finishes so a resumed attempt continues."""

    __tablename__ = "training_trials"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_training_trials_job_id_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("training_attempts.id", ondelete="SET NULL"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]]
    score: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    feasible: Mapped[bool] = mapped_column(default=True, server_default="true")
    reason: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    window: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TrainedConfiguration(Base):
    """The saved result of a training job: exactly one per succeeded training job."""

    __tablename__ = "trained_configurations"
    __table_args__ = (Index("ix_trained_configurations_symbol_strategy", "symbol", "strategy"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    # The distribution the strategy came from and its version (null: saved before they were kept).
    strategy_package: Mapped[str | None] = mapped_column(String(128))
    strategy_version: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]]
    objective: Mapped[str] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    train_metrics: Mapped[dict[str, Any]]
    validation_metrics: Mapped[dict[str, Any]]
    overfit: Mapped[bool] = mapped_column(default=False)
    overfit_reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_start: Mapped[datetime | None]
    data_end: Mapped[datetime | None]
    seed: Mapped[int] = mapped_column(BigInteger)
    code_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Candle(Base):
    """One OHLCV bar. Unique per (symbol, timeframe, open_time); `source` labels synthetic data."""

    __tablename__ = "candles"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    open_time: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32), default="import")


class CandleRevision(Base):
    """One row (id 1): a number that a trigger on `candles` raises in the same transaction as
    every statement that changes candles (migration 0005). A check of a job's candles made at
    one revision still holds while the revision is unchanged."""

    __tablename__ = "candle_revision"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class Schedule(Base):
    """A cron schedule that starts a training job from its template at each tick."""

    __tablename__ = "training_schedules"
    __table_args__ = (
        CheckConstraint(_in("misfire_policy", MisfirePolicy), name="misfire_policy"),
        CheckConstraint(_in("overlap_policy", OverlapPolicy), name="overlap_policy"),
        Index("ix_training_schedules_paused_next_fire_at", "paused", "next_fire_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    template: Mapped[dict[str, Any]]
    lookback: Mapped[str | None] = mapped_column(String(16))
    misfire_policy: Mapped[str] = mapped_column(String(16), default=MisfirePolicy.RUN_ONCE)
    overlap_policy: Mapped[str] = mapped_column(String(16), default=OverlapPolicy.SKIP)
    paused: Mapped[bool] = mapped_column(default=False)
    next_fire_at: Mapped[datetime | None]
    last_fired_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ScheduleFire(Base):
    """One tick of a schedule that was acted on. Unique per (schedule, fire time): a tick
    cannot be fired twice, whichever process or clock tries."""

    __tablename__ = "schedule_fires"
    __table_args__ = (
        UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fires_schedule_id_fire_time"),
        CheckConstraint(_in("outcome", FireOutcome), name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_schedules.id", ondelete="CASCADE"))
    fire_time: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("training_jobs.id", ondelete="SET NULL"), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
