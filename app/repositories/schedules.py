"""Queries on training_schedules and schedule_fires."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session, aliased

from app.models import Job, Schedule, ScheduleFire
from app.status import FireOutcome, JobStatus

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
    """A job this schedule started (a training job, or the candles refresh before one) is
    still queued or running."""
    query = (
        select(func.count())
        .select_from(ScheduleFire)
        .join(Job, or_(Job.id == ScheduleFire.job_id, Job.id == ScheduleFire.refresh_job_id))
        .where(ScheduleFire.schedule_id == schedule_id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    return bool(session.scalar(query))


def recent_fires(
    session: Session, schedule_id: uuid.UUID, limit: int = 10
) -> Sequence[tuple[ScheduleFire, Job | None, Job | None]]:
    """The latest fires, each with its training job and the candles refresh job it ran first."""
    refresh = aliased(Job)
    query = (
        select(ScheduleFire, Job, refresh)
        .outerjoin(Job, Job.id == ScheduleFire.job_id)
        .outerjoin(refresh, refresh.id == ScheduleFire.refresh_job_id)
        .where(ScheduleFire.schedule_id == schedule_id)
        .order_by(ScheduleFire.fire_time.desc())
        .limit(limit)
    )
    return [(fire, job, refreshed) for fire, job, refreshed in session.execute(query).all()]


def counts(session: Session) -> dict[bool, int]:
    """Schedules by paused flag."""
    rows = session.execute(select(Schedule.paused, func.count()).group_by(Schedule.paused)).all()
    return {paused: n for paused, n in rows}


def oldest_overdue(session: Session) -> datetime | None:
    """The earliest next tick of an unpaused schedule (in the past when firing lags)."""
    return session.scalar(select(func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False)))


def fire_of_refresh(session: Session, refresh_job_id: uuid.UUID) -> ScheduleFire | None:
    """The fire that started this candles refresh job, locked."""
    query = select(ScheduleFire).where(ScheduleFire.refresh_job_id == refresh_job_id).with_for_update()
    return session.scalar(query)


def fail_ended_refreshes(session: Session) -> int:
    """Fires still `refreshing` whose refresh job failed, was canceled or is gone become
    `refresh_failed`, with the job's error: one statement. The number of fires changed."""
    result = session.execute(
        text(
            """
            UPDATE schedule_fires f SET outcome = :failed, message = CASE
                WHEN j.id IS NULL THEN 'its candles refresh job is gone; nothing was trained'
                ELSE 'candles refresh job ' || j.id || ' ' || j.status
                     || coalesce(': ' || j.error_type || ' ' || coalesce(j.error_message, ''), '')
                     || '; nothing was trained' END
            FROM schedule_fires f2 LEFT JOIN training_jobs j ON j.id = f2.refresh_job_id
            WHERE f2.id = f.id AND f.outcome = :refreshing AND f2.outcome = :refreshing
              AND (j.id IS NULL OR j.status IN (:job_failed, :job_canceled))
            """
        ),
        {
            "failed": FireOutcome.REFRESH_FAILED.value,
            "refreshing": FireOutcome.REFRESHING.value,
            "job_failed": JobStatus.FAILED.value,
            "job_canceled": JobStatus.CANCELED.value,
        },
    )
    return result.rowcount
