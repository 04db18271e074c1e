"""What a user can do to a job: start, cancel, retry, look. Routes and the CLI call these;
they take a Session and leave the commit to the caller, which enqueues only after it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.kinds import limits
from app.models import TERMINAL_STATUSES, Job
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.services import dispatch
from app.settings import Settings
from app.smoke import STEPS as SMOKE_STEPS


class JobError(Exception):
    """A request that cannot be carried out; `status_code` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class JobNotFound(JobError):
    status_code = 404


class JobConflict(JobError):
    status_code = 409


class QueueFull(JobError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class StartResult:
    job: Job
    created: bool


def request_hash(kind: str, priority: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "priority": priority, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def start(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    priority: str,
    params: dict[str, Any],
    n_iterations: int | None,
    idempotency_key: str | None,
) -> StartResult:
    """Create a queued job (not committed). Same idempotency key and body: the existing job."""
    digest = request_hash(kind, priority, params)
    if idempotency_key:
        existing = jobs_repo.get_by_idempotency_key(session, idempotency_key)
        if existing is not None:
            return _replay(existing, digest)
    _admit(session, settings)
    job = Job(
        id=uuid.uuid4(),
        kind=kind,
        status="queued",
        priority=priority,
        params=params,
        idempotency_key=idempotency_key,
        request_hash=digest,
        n_iterations=n_iterations,
        max_attempts=limits(settings, kind).max_attempts,
        percent=0.0,
        attempts=0,
        message="waiting for a worker",
    )
    dispatch.prepare(job)
    session.add(job)
    try:
        session.flush()
    except IntegrityError:  # the same key committed concurrently
        session.rollback()
        existing = jobs_repo.get_by_idempotency_key(session, idempotency_key or "")
        if existing is None:
            raise
        return _replay(existing, digest)
    return StartResult(job, created=True)


def start_smoke(session: Session, settings: Settings, *, priority: str = "high", **params: Any) -> Job:
    """A smoke job (not committed): the CLI's `trad smoke`, the deploy health check, benchmarks."""
    return start(
        session,
        settings,
        kind="smoke",
        priority=priority,
        params=params,
        n_iterations=SMOKE_STEPS,
        idempotency_key=None,
    ).job


def _admit(session: Session, settings: Settings) -> None:
    """Backpressure: refuse new work beyond `max_queued_jobs` queued jobs."""
    if jobs_repo.count_queued(session) >= settings.max_queued_jobs:
        raise QueueFull(f"the queue holds {settings.max_queued_jobs} jobs already; try again later", retry_after_s=30)


def _replay(existing: Job, digest: str) -> StartResult:
    if existing.request_hash != digest:
        raise JobConflict("Idempotency-Key was already used with a different request body")
    return StartResult(existing, created=False)


def get(session: Session, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return job


def list_jobs(
    session: Session, *, status: str | None, kind: str | None, limit: int, offset: int
) -> tuple[Sequence[Job], int]:
    return jobs_repo.list_jobs(session, status=status, kind=kind, limit=limit, offset=offset)


def cancel(session: Session, job_id: uuid.UUID) -> tuple[Job, str | None]:
    """Cancel a job. A queued job is canceled at once (returns the dispatch id to take out of
    Redis after commit); a running one gets a durable cancel request its attempt acts on."""
    job = jobs_repo.get(session, job_id, for_update=True)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    if job.status in TERMINAL_STATUSES:
        raise JobConflict(f"job is already {job.status}")
    now = utcnow()
    job.cancel_requested_at = job.cancel_requested_at or now
    job.updated_at = now
    if job.status == "queued":
        job.status, job.finished_at, job.message = "canceled", now, "canceled while queued"
        return job, job.rq_job_id
    job.message = "cancel requested"
    return job, None


def retry(session: Session, settings: Settings, job_id: uuid.UUID) -> Job:
    """Queue a failed or canceled job again, keeping its attempt history and its trials."""
    job = jobs_repo.get(session, job_id, for_update=True)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    if job.status not in ("failed", "canceled"):
        raise JobConflict(f"only failed or canceled jobs can be retried; this one is {job.status}")
    _admit(session, settings)
    now = utcnow()
    job.status, job.finished_at, job.cancel_requested_at, job.not_before = "queued", None, None, None
    job.error_type = job.error_message = None
    job.max_attempts = attempts_repo.counted_failures(session, job.id) + limits(settings, job.kind).max_attempts
    job.message, job.updated_at = "retry requested; waiting for a worker", now
    dispatch.prepare(job)
    return job
