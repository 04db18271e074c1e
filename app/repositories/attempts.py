"""Queries on training_attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Attempt
from app.status import BUDGET_ATTEMPT_STATUSES, AttemptStatus


def get(session: Session, attempt_id: int, *, for_update: bool = False) -> Attempt | None:
    return session.get(Attempt, attempt_id, with_for_update=for_update)


def for_job(session: Session, job_id: uuid.UUID) -> Sequence[Attempt]:
    return session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)).all()


def counted_failures(session: Session, job_id: uuid.UUID) -> int:
    """Attempts that used up the job's budget (preempted ones did not)."""
    stmt = select(func.count()).where(Attempt.job_id == job_id, Attempt.status.in_(BUDGET_ATTEMPT_STATUSES))
    return session.scalar(stmt) or 0


def stale_running(session: Session, heartbeat_before: datetime) -> Sequence[tuple[uuid.UUID, int]]:
    """(job id, attempt id) of running attempts whose heartbeat is older than the cut-off. Not
    locked: the caller locks the job, then the attempt, and looks again."""
    stmt = select(Attempt.job_id, Attempt.id).where(
        Attempt.status == AttemptStatus.RUNNING, Attempt.heartbeat_at < heartbeat_before
    )
    return [(job_id, attempt_id) for job_id, attempt_id in session.execute(stmt).all()]


def is_stale(attempt: Attempt, heartbeat_before: datetime) -> bool:
    return attempt.status == AttemptStatus.RUNNING and attempt.heartbeat_at < heartbeat_before


def set_start_iteration(session: Session, attempt_id: int, iteration: int) -> None:
    session.execute(update(Attempt).where(Attempt.id == attempt_id).values(start_iteration=iteration))


def touch_heartbeat(session: Session, attempt_id: int, now: datetime) -> None:
    session.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id, Attempt.status == AttemptStatus.RUNNING)
        .values(heartbeat_at=now)
    )


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Attempt.status, func.count()).group_by(Attempt.status)).all()
    return {status: n for status, n in rows}
