"""Queries on training_attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Attempt

# Attempts that use up the job's budget; preempted ones (SIGTERM) do not.
COUNTED_STATUSES = ("failed", "lost")


def for_job(session: Session, job_id: uuid.UUID) -> Sequence[Attempt]:
    return session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)).all()


def counted_failures(session: Session, job_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(Attempt.job_id == job_id, Attempt.status.in_(COUNTED_STATUSES))
    return session.scalar(stmt) or 0


def stale_running(session: Session, heartbeat_before: datetime) -> Sequence[Attempt]:
    stmt = (
        select(Attempt)
        .where(Attempt.status == "running", Attempt.heartbeat_at < heartbeat_before)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()
