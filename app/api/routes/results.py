"""/api/v2/training/jobs/{id}/trials and …/progress/history: what a job tried and reported,
paged, for optimisation-history plots and the job page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import SessionDep
from app.api.errors import responses
from app.api.schemas import FiniteFloat
from app.models import Trial
from app.repositories import results as results_repo
from app.services import jobs as jobs_service

router = APIRouter(prefix="/api/v2/training/jobs", tags=["results"], responses=responses(401, 500, 503))

Limit = Annotated[int, Query(ge=1, le=2000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


class TrialOut(BaseModel):
    number: int
    window: int = Field(description="walk-forward window the trial optimised (0 for a holdout job)")
    params: dict[str, Any]
    score: FiniteFloat = Field(description="objective value; null when undefined or infeasible")
    feasible: bool
    reason: str | None = Field(description="why the trial is infeasible")
    duration_s: FiniteFloat
    metrics: dict[str, Any]
    created_at: datetime


class TrialPage(BaseModel):
    items: list[TrialOut]
    total: int
    limit: int
    offset: int


class ProgressEventOut(BaseModel):
    attempt: int | None = Field(description="the attempt's number; null if the attempt row is gone")
    phase: str
    percent: FiniteFloat
    message: str | None
    iteration: int | None
    best_score: FiniteFloat
    created_at: datetime


class ProgressHistory(BaseModel):
    items: list[ProgressEventOut]
    total: int
    limit: int
    offset: int


def _trial(row: Trial) -> TrialOut:
    return TrialOut(
        number=row.number,
        window=row.window,
        params=row.params,
        score=row.score,
        feasible=row.feasible,
        reason=row.reason,
        duration_s=row.duration_s,
        metrics=row.metrics or {},
        created_at=row.created_at,
    )


@router.get("/{job_id}/trials", response_model=TrialPage, responses=responses(404, 422))
def list_trials(job_id: uuid.UUID, session: SessionDep, limit: Limit = 500, offset: Offset = 0) -> TrialPage:
    """The job's finished optimisation trials in trial order: parameters, score, feasibility, duration."""
    jobs_service.get(session, job_id)  # NotFound: 404
    rows, total = results_repo.trials_page(session, job_id, limit=limit, offset=offset)
    return TrialPage(items=[_trial(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}/progress/history", response_model=ProgressHistory, responses=responses(404, 422))
def progress_history(job_id: uuid.UUID, session: SessionDep, limit: Limit = 500, offset: Offset = 0) -> ProgressHistory:
    """Every progress report the job's attempts persisted, oldest first."""
    jobs_service.get(session, job_id)  # NotFound: 404
    rows, total = results_repo.progress_history(session, job_id, limit=limit, offset=offset)
    items = [
        ProgressEventOut(
            attempt=number,
            phase=event.phase,
            percent=event.percent,
            message=event.message,
            iteration=event.iteration,
            best_score=event.best_score,
            created_at=event.created_at,
        )
        for event, number in rows
    ]
    return ProgressHistory(items=items, total=total, limit=limit, offset=offset)
