"""Queries on training_schedules and schedule_fires."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Job, Schedule, ScheduleFire
from app.status import JobStatus

ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


def get(session: Session, schedule_id: uuid.UUID, *, for_update: bool = False) -> Schedule | None:
    return session.get(Schedule, schedule_id, with_for_update=for_update or None)


def get_by_name(session: Session, name: str) -> Schedule | None:
    return session.scalar(select(Schedule).where(Schedule.name == name))


def list_all(session: Session) -> Sequence[Schedule]:
    return session.scalars(select(Schedule).order_by(Schedule.name)).all()


def due(session: Session, now: datetime) -> Sequence[Schedule]:
    """Unpaused schedules whose next tick has come, locked (others skip them)."""
    query = (
        select(Schedule)
        .where(Schedule.paused.is_(False), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).all()


def has_active_job(session: Session, schedule_id: uuid.UUID) -> bool:
    """A job this schedule started is still queued or running."""
    query = (
        select(func.count())
        .select_from(ScheduleFire)
        .join(Job, Job.id == ScheduleFire.job_id)
        .where(ScheduleFire.schedule_id == schedule_id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    return bool(session.scalar(query))


def recent_fires(
    session: Session, schedule_id: uuid.UUID, limit: int = 10
) -> Sequence[tuple[ScheduleFire, Job | None]]:
    query = (
        select(ScheduleFire, Job)
        .outerjoin(Job, Job.id == ScheduleFire.job_id)
        .where(ScheduleFire.schedule_id == schedule_id)
        .order_by(ScheduleFire.fire_time.desc())
        .limit(limit)
    )
    return [(fire, job) for fire, job in session.execute(query).all()]


def counts(session: Session) -> dict[bool, int]:
    """Schedules by paused flag."""
    rows = session.execute(select(Schedule.paused, func.count()).group_by(Schedule.paused)).all()
    return {paused: n for paused, n in rows}


def oldest_overdue(session: Session) -> datetime | None:
    """The earliest next tick of an unpaused schedule (in the past when firing lags)."""
    return session.scalar(select(func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False)))
