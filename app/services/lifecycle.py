"""How an attempt ends and what that does to its job. One place for the state machine:

queued → running → succeeded | failed | canceled; running → queued when an attempt is
preempted (SIGTERM, no attempt used up) or lost/failed transiently (attempt used up, delayed
by backoff); failed/canceled → queued on a manual retry (services.jobs.retry).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.clock import utcnow
from app.models import Attempt, Job
from app.repositories import attempts as attempts_repo
from app.services import dispatch
from app.settings import Settings


@dataclass(frozen=True)
class Claim:
    job: Job
    attempt: Attempt


def claim(session: Session, job_id: uuid.UUID, worker_name: str, pid: int, start_iteration: int = 0) -> Claim | None:
    """Take a queued job for one attempt. None if it is not queued or not yet due (a duplicate
    or early dispatch): only one attempt of a job ever runs at a time."""
    now = utcnow()
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None or job.status != "queued" or (job.not_before is not None and job.not_before > now):
        return None
    job.attempts += 1
    attempt = Attempt(
        job_id=job.id,
        number=job.attempts,
        status="running",
        worker_name=worker_name,
        pid=pid,
        start_iteration=start_iteration,
        started_at=now,
        heartbeat_at=now,
    )
    session.add(attempt)
    session.flush()
    job.status, job.current_attempt_id, job.not_before = "running", attempt.id, None
    job.started_at = job.started_at or now
    job.updated_at = job.last_progress_at = now
    job.error_type = job.error_message = None
    job.message = f"attempt {attempt.number} started on {worker_name}"
    return Claim(job, attempt)


def lock_current(session: Session, job_id: uuid.UUID, attempt_id: int) -> Claim | None:
    """The job and attempt, locked, if that attempt is still the job's running attempt."""
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None or job.status != "running" or job.current_attempt_id != attempt_id:
        return None
    attempt = session.get(Attempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status != "running":
        return None
    return Claim(job, attempt)


def _close_attempt(
    attempt: Attempt, status: str, now: datetime, error_type: str | None, error_message: str | None
) -> None:
    attempt.status, attempt.finished_at = status, now
    attempt.error_type, attempt.error_message = error_type, error_message


def succeed(claim: Claim, message: str = "done") -> None:
    now = utcnow()
    _close_attempt(claim.attempt, "succeeded", now, None, None)
    job = claim.job
    job.status, job.percent, job.message = "succeeded", 100.0, message
    job.finished_at = job.updated_at = now
    job.current_attempt_id = None


def cancel(claim: Claim, message: str = "canceled") -> None:
    now = utcnow()
    _close_attempt(claim.attempt, "canceled", now, None, None)
    _finish_canceled(claim.job, now, message)


def _finish_canceled(job: Job, now: datetime, message: str) -> None:
    job.status, job.message = "canceled", message
    job.finished_at = job.updated_at = now
    job.current_attempt_id = None


def preempt(claim: Claim) -> None:
    """Back to the front of the queue without using up an attempt (dispatch after commit)."""
    now = utcnow()
    _close_attempt(claim.attempt, "preempted", now, None, None)
    job = claim.job
    if job.cancel_requested_at is not None:
        _finish_canceled(job, now, "canceled while the worker stopped")
        return
    job.status, job.current_attempt_id, job.updated_at = "queued", None, now
    job.message = "checkpointed: worker stopping; waiting for a worker to resume"
    dispatch.prepare(job)


def fail(
    claim: Claim,
    settings: Settings,
    *,
    error_type: str,
    error_message: str,
    retryable: bool,
    attempt_status: str = "failed",
) -> None:
    """End the attempt in failure. Retryable failures re-queue the job with backoff while its
    attempt budget lasts; the reconciler dispatches it when it is due."""
    now = utcnow()
    job = claim.job
    _close_attempt(claim.attempt, attempt_status, now, error_type, error_message)
    if job.cancel_requested_at is not None:
        _finish_canceled(job, now, f"canceled ({error_type} while stopping)")
        return
    job.current_attempt_id, job.updated_at = None, now
    job.error_type, job.error_message = error_type, error_message
    failures = attempts_repo.counted_failures(_session_of(job), job.id)  # autoflush counts this one
    if retryable and failures < job.max_attempts:
        delay = backoff_seconds(failures, settings.retry_backoff_base_s, settings.retry_backoff_max_s)
        job.status, job.not_before = "queued", now + timedelta(seconds=delay)
        job.rq_job_id = job.enqueued_at = None
        job.message = f"attempt {claim.attempt.number} {attempt_status}: {error_type}; retry in {delay:.0f}s"
        return
    job.status, job.finished_at = "failed", now
    job.message = f"{error_type}: {error_message}"


def _session_of(job: Job) -> Session:
    session = object_session(job)
    assert session is not None
    return session


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, times a factor in [0.5, 1.5)."""
    raw = min(cap, base * (2 ** max(0, failures - 1)))
    return raw * random.uniform(0.5, 1.5)
