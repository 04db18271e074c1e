"""/api/v2/training/jobs/{id}/trials and …/progress/history: what a job tried and reported,
paged, for optimisation-history plots and the job page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from app.api.deps import SessionDep
from app.api.schemas import FiniteFloat
from app.models import Trial
from app.repositories import jobs as jobs_repo
from app.repositories import results as results_repo

router = APIRouter(prefix="/api/v2/training/jobs", tags=["results"])

Limit = Annotated[int, Query(ge=1, le=2000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid bearer token"},
    404: {"description": "no job with this id"},
    422: {"description": "a bad parameter; the message names it"},
}


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


def _require_job(session: SessionDep, job_id: uuid.UUID) -> None:
    if jobs_repo.get(session, job_id) is None:
        raise HTTPException(404, detail=f"no job with id {job_id}")


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


@router.get("/{job_id}/trials", response_model=TrialPage, responses=ERRORS)
def list_trials(job_id: uuid.UUID, session: SessionDep, limit: Limit = 500, offset: Offset = 0) -> TrialPage:
    """The job's finished optimisation trials in trial order: parameters, score, feasibility, duration."""
    _require_job(session, job_id)
    rows, total = results_repo.trials_page(session, job_id, limit=limit, offset=offset)
    return TrialPage(items=[_trial(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}/progress/history", response_model=ProgressHistory, responses=ERRORS)
def progress_history(job_id: uuid.UUID, session: SessionDep, limit: Limit = 500, offset: Offset = 0) -> ProgressHistory:
    """Every progress report the job's attempts persisted, oldest first."""
    _require_job(session, job_id)
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
