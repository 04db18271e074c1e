"""Rows → response bodies. Everything here is read from PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.api.schemas import (
    AttemptOut,
    ErrorInfo,
    JobDetail,
    JobSummary,
    Progress,
    ScheduleDetail,
    ScheduleFireOut,
    ScheduleOut,
)
from app.clock import utcnow
from app.models import Job, Schedule, ScheduleFire, TrainedConfiguration
from app.repositories import attempts as attempts_repo
from app.repositories import configurations as configurations_repo
from app.repositories.jobs import JobWithConfiguration
from app.status import BUDGET_ATTEMPT_STATUSES, JobStatus

_configuration_ids = configurations_repo.ids_for_jobs


def _progress_fields(job: Job, configuration_id: uuid.UUID | None, counted_attempts: int) -> dict:
    return dict(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        phase=job.phase,
        percent=round(job.percent, 2),
        message=job.message,
        iteration=job.iteration,
        n_iterations=job.n_iterations,
        best_score=job.best_score,
        eta_seconds=job.eta_seconds if job.status == JobStatus.RUNNING else None,
        attempts=job.attempts,
        counted_attempts=counted_attempts,
        max_attempts=job.max_attempts,
        resumed_from_iteration=job.resumed_from_iteration,
        cancel_requested=job.cancel_requested_at is not None,
        not_before=job.not_before,
        created_at=job.created_at,
        started_at=job.started_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        error=ErrorInfo(type=job.error_type, message=job.error_message) if job.error_type else None,
        configuration_id=configuration_id,
    )


def accepted(job: Job, configuration_id: uuid.UUID | None, counted_attempts: int) -> dict:
    """The fields of a start's answer (`StartAccepted` adds the progress URL)."""
    return _progress_fields(job, configuration_id, counted_attempts)


def progress(session: Session, job: Job) -> Progress:
    counted = attempts_repo.counted_failures(session, job.id)
    return Progress(**_progress_fields(job, _configuration_ids(session, [job.id]).get(job.id), counted))


def progress_of(job: Job, configuration_id: uuid.UUID | None, counted_attempts: int) -> Progress:
    """The progress body of a job read together with its configuration id and counted attempts."""
    return Progress(**_progress_fields(job, configuration_id, counted_attempts))


def _duration_s(job: Job, now: datetime) -> float | None:
    if job.started_at is None:
        return None
    return round(((job.finished_at or now) - job.started_at).total_seconds(), 3)


def progress_page(rows: list[JobWithConfiguration]) -> list[JobSummary]:
    now = utcnow()
    return [
        JobSummary(
            **_progress_fields(job, configuration_id, counted),
            strategy=job.params.get("strategy"),
            symbol=job.params.get("symbol"),
            timeframe=job.params.get("timeframe"),
            duration_s=_duration_s(job, now),
        )
        for job, configuration_id, counted in rows
    ]


def _param_importances(configuration: TrainedConfiguration | None) -> dict[str, float] | None:
    """The configuration's parameter importances (stored in its `details`); null without one."""
    if configuration is None:
        return None
    return dict((configuration.details or {}).get("param_importances") or {})


def detail(session: Session, job: Job) -> JobDetail:
    attempts = [AttemptOut.model_validate(a) for a in attempts_repo.for_job(session, job.id)]
    counted = sum(1 for a in attempts if a.status in BUDGET_ATTEMPT_STATUSES)
    configuration = configurations_repo.for_job(session, job.id)
    fields = _progress_fields(job, configuration.id if configuration else None, counted)
    return JobDetail(
        **fields,
        priority=job.priority,
        params=job.params,
        attempt_history=attempts,
        param_importances=_param_importances(configuration),
    )


def schedule(row: Schedule) -> ScheduleOut:
    return ScheduleOut(**_schedule_fields(row))


def schedule_detail(row: Schedule, fires: Sequence[tuple[ScheduleFire, Job | None, Job | None]]) -> ScheduleDetail:
    recent = [
        ScheduleFireOut(
            fire_time=fire.fire_time,
            outcome=fire.outcome,
            message=fire.message,
            job_id=fire.job_id,
            job_status=job.status if job is not None else None,
            refresh_job_id=fire.refresh_job_id,
            refresh_job_status=refresh.status if refresh is not None else None,
        )
        for fire, job, refresh in fires
    ]
    return ScheduleDetail(**_schedule_fields(row), recent_fires=recent)


def _schedule_fields(row: Schedule) -> dict:
    template = dict(row.template)
    if row.lookback:
        template.update(start=None, end=None, lookback=row.lookback)
    return dict(
        id=row.id,
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        template=template,
        misfire_policy=row.misfire_policy,
        overlap_policy=row.overlap_policy,
        paused=row.paused,
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
