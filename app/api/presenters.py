"""Rows → response bodies. Everything here is read from PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.api.schemas import AttemptOut, ErrorInfo, JobDetail, Progress
from app.models import Job
from app.repositories import attempts as attempts_repo
from app.repositories import configurations as configurations_repo
from app.status import JobStatus

_configuration_ids = configurations_repo.ids_for_jobs


def _progress_fields(job: Job, configuration_id: uuid.UUID | None) -> dict:
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


def progress(session: Session, job: Job) -> Progress:
    return Progress(**_progress_fields(job, _configuration_ids(session, [job.id]).get(job.id)))


def progress_of(job: Job, configuration_id: uuid.UUID | None) -> Progress:
    """The progress body of a job read together with its configuration id."""
    return Progress(**_progress_fields(job, configuration_id))


def detail(session: Session, job: Job) -> JobDetail:
    attempts = [AttemptOut.model_validate(a) for a in attempts_repo.for_job(session, job.id)]
    fields = _progress_fields(job, _configuration_ids(session, [job.id]).get(job.id))
    return JobDetail(**fields, priority=job.priority, params=job.params, attempt_history=attempts)
