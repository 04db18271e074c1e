"""Rows → response bodies. Presenters take rows and read nothing themselves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
from app.models import Attempt, Job, Schedule, ScheduleFire, TrainedConfiguration
from app.repositories import job_reads
from app.status import BUDGET_ATTEMPT_STATUSES, JobStatus

# The progress columns whose body field differs from the column (the rest are copied by name).
_RENAMED = {"id": "job_id", "cancel_requested_at": "cancel_requested", "error_type": "error", "error_message": None}
_COPIED = tuple(c.key for c in job_reads.PROGRESS_COLUMNS if c.key not in _RENAMED)
# Progress is the body of these columns and nothing else: a column added without its field
# (or the reverse) stops the API at import.
_FIELDS = {*_COPIED, *(f for f in _RENAMED.values() if f), "configuration_id", "counted_attempts"}
assert set(Progress.model_fields) == _FIELDS, set(Progress.model_fields) ^ _FIELDS


def progress_fields(row) -> dict:
    """A progress body's fields from a row of `job_reads` (a job's progress columns, its
    configuration id and counted attempts)."""
    fields = {key: getattr(row, key) for key in _COPIED}
    fields.update(
        job_id=row.id,
        percent=round(row.percent, 2),
        eta_seconds=row.eta_seconds if row.status == JobStatus.RUNNING else None,
        cancel_requested=row.cancel_requested_at is not None,
        error=ErrorInfo(type=row.error_type, message=row.error_message) if row.error_type else None,
        configuration_id=row.configuration_id,
        counted_attempts=row.counted_attempts,
    )
    return fields


def progress_of(row) -> Progress:
    """The progress body of a `job_reads` row."""
    return Progress(**progress_fields(row))


def _duration_s(row, now: datetime) -> float | None:
    if row.started_at is None:
        return None
    return round(((row.finished_at or now) - row.started_at).total_seconds(), 3)


def progress_page(rows: list) -> list[JobSummary]:
    """The items of a page of `job_reads.page` rows."""
    now = utcnow()
    return [
        JobSummary(
            **progress_fields(row),
            strategy=row.params.get("strategy"),
            symbol=row.params.get("symbol"),
            timeframe=row.params.get("timeframe"),
            duration_s=_duration_s(row, now),
        )
        for row in rows
    ]


def _param_importances(configuration: TrainedConfiguration | None) -> dict[str, float] | None:
    """The configuration's parameter importances (stored in its `details`); null without one."""
    if configuration is None:
        return None
    return dict((configuration.details or {}).get("param_importances") or {})


def detail(job: Job, attempts: Sequence[Attempt], configuration: TrainedConfiguration | None) -> JobDetail:
    """A job with its attempts (oldest first) and its saved configuration, if any."""
    history = [AttemptOut.model_validate(a) for a in attempts]
    counted = sum(1 for a in history if a.status in BUDGET_ATTEMPT_STATUSES)
    row = job_reads.row_of(job, configuration.id if configuration else None, counted)
    return JobDetail(
        **progress_fields(row),
        priority=job.priority,
        params=job.params,
        attempt_history=history,
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
