"""Read-only queries behind a job's results: its trials, its progress history, and which job
each worker is running. The caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from app.models import Attempt, ProgressEvent, Trial
from app.status import AttemptStatus


def trials_page(session: Session, job_id: uuid.UUID, *, limit: int, offset: int) -> tuple[Sequence[Trial], int]:
    """A job's finished trials in trial-number order, and how many there are."""
    rows = session.scalars(
        select(Trial).where(Trial.job_id == job_id).order_by(Trial.number).limit(limit).offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))
    return rows, total or 0


def progress_history(
    session: Session, job_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[Sequence[Row[tuple[ProgressEvent, int | None]]], int]:
    """A job's persisted progress reports, oldest first, each with its attempt's number."""
    rows = session.execute(
        select(ProgressEvent, Attempt.number)
        .outerjoin(Attempt, Attempt.id == ProgressEvent.attempt_id)
        .where(ProgressEvent.job_id == job_id)
        .order_by(ProgressEvent.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(ProgressEvent).where(ProgressEvent.job_id == job_id))
    return rows, total or 0


def running_attempts_by_worker(session: Session) -> dict[str, tuple[uuid.UUID, int]]:
    """worker name → (job id, attempt number) of the attempt it is running now."""
    rows = session.execute(
        select(Attempt.worker_name, Attempt.job_id, Attempt.number).where(
            Attempt.status == AttemptStatus.RUNNING, Attempt.worker_name.is_not(None)
        )
    ).all()
    return {name: (job_id, number) for name, job_id, number in rows}
