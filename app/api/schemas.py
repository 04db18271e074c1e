"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from app.models import PRIORITIES
from app.status import AttemptStatus, JobStatus
from app.training.catalog import OBJECTIVES, SYMBOL_PATTERN, TIMEFRAMES, strategy_names

Priority = Literal[PRIORITIES]  # a tuple subscript: Literal of each of its values
Timeframe = Literal[TIMEFRAMES]
Objective = Literal[OBJECTIVES]
Status = JobStatus


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


# A float in a response body: finite, or null (NaN and ±inf become null, never a sentinel).
FiniteFloat = Annotated[float | None, AfterValidator(_finite_or_none)]


class StartTraining(BaseModel):
    """POST /api/v2/training/start. Unknown fields and wrong types (e.g. "10" for a number) are refused."""

    model_config = ConfigDict(extra="forbid")

    strategy: StrictStr = Field(max_length=64, description="a registered strategy, e.g. sma_crossover")
    symbol: StrictStr = Field(pattern=SYMBOL_PATTERN, description="e.g. BTCUSDT")
    timeframe: Timeframe
    start: datetime | None = Field(None, description="first candle (inclusive); default: all data")
    end: datetime | None = Field(None, description="last candle (exclusive); default: all data")
    n_iterations: StrictInt = Field(50, ge=1, le=2000, description="optimisation trials")
    priority: Priority = "normal"
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)
    objective: Objective = "sharpe"
    holdout_fraction: StrictFloat = Field(0.2, ge=0.05, le=0.5)
    folds: StrictInt = Field(0, ge=0, le=10, description="walk-forward folds for validation; 0 = holdout only")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        names = strategy_names()
        if value not in names:
            raise ValueError(f"unknown strategy {value!r}; known: {', '.join(names)}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _range(self) -> StartTraining:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def job_params(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"priority"})


class ErrorInfo(BaseModel):
    type: str | None
    message: str | None


class Progress(BaseModel):
    job_id: uuid.UUID
    kind: str
    status: Status
    phase: str | None
    percent: float
    message: str | None
    iteration: int | None
    n_iterations: int | None
    best_score: float | None
    eta_seconds: float | None
    attempts: int
    resumed_from_iteration: int | None
    cancel_requested: bool
    not_before: datetime | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    error: ErrorInfo | None
    configuration_id: uuid.UUID | None


class StartAccepted(Progress):
    progress_url: str


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    status: AttemptStatus
    worker_name: str | None
    start_iteration: int
    error_type: str | None
    error_message: str | None
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None


class JobSummary(Progress):
    """A job in the list: its progress plus what it trains and how long it ran."""

    strategy: str | None = Field(description="training jobs: the strategy; null for other kinds")
    symbol: str | None
    timeframe: str | None
    duration_s: FiniteFloat = Field(description="started → finished (or now while running); null if never started")


class JobDetail(Progress):
    priority: Priority
    params: dict[str, Any]
    attempt_history: list[AttemptOut]
    param_importances: dict[str, FiniteFloat] | None = Field(
        description="the saved configuration's parameter importances (sum ≈ 1); null without a configuration"
    )


class JobPage(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class WorkerInfo(BaseModel):
    name: str
    state: str | None = Field(description="RQ's view: idle, busy, suspended…")
    job_id: uuid.UUID | None = Field(description="the job whose attempt this worker runs now (from PostgreSQL)")
    attempt: int | None


class QueueInfo(BaseModel):
    depth: dict[str, int] = Field(description="dispatches waiting in Redis per priority")
    queued: int = Field(description="jobs queued in PostgreSQL (the truth)")
    running: int
    failed: int
    workers: int
    worker_list: list[WorkerInfo] = Field(description="registered workers and the job each is running")
    redis_ok: bool
