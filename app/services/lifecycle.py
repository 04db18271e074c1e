"""The job state machine: every move of a job or an attempt is one function here, and each
takes the session explicitly. Nothing else writes `status`.

    queued ──claim──▶ running ──succeed──▶ succeeded
      │                 │ ├──cancel──────▶ canceled      (phase two: the attempt stops or is killed)
      │                 │ ├──preempt─────▶ queued        (worker stopping; no attempt used up)
      │                 │ └──fail / lose─▶ queued        (transient, budget left; after a backoff)
      │                 │                ▶ failed        (deterministic, or budget spent)
      └─request_cancel─▶ canceled        (phase one; a running job only records the request)
    failed | canceled ──retry──▶ queued  (a user's manual retry)

A running job whose cancel was requested ends `canceled` however its attempt ends, except
when it succeeds. `TRANSITIONS` is the table the functions enforce; a refused move raises
`IllegalTransition`.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import Attempt, Job
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.repositories import progress as progress_repo
from app.services import dispatch
from app.settings import Settings
from app.status import AttemptStatus, JobStatus

Q, R, S, F, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED


class Transition(StrEnum):
    """The moves of a job's state machine (the keys of `TRANSITIONS`)."""

    CLAIM = "claim"
    PROGRESS = "progress"
    SUCCEED = "succeed"
    REQUEST_CANCEL = "request_cancel"
    CANCEL = "cancel"
    PREEMPT = "preempt"
    FAIL = "fail"
    LOSE = "lose"
    RETRY = "retry"


T = Transition
# transition → {job status before: the statuses it may leave the job in}
TRANSITIONS: dict[Transition, dict[JobStatus, frozenset[JobStatus]]] = {
    T.CLAIM: {Q: frozenset({R})},
    T.PROGRESS: {R: frozenset({R})},
    T.SUCCEED: {R: frozenset({S})},
    T.REQUEST_CANCEL: {Q: frozenset({C}), R: frozenset({R})},
    T.CANCEL: {R: frozenset({C})},
    T.PREEMPT: {R: frozenset({Q, C})},
    T.FAIL: {R: frozenset({Q, F, C})},
    T.LOSE: {R: frozenset({Q, F, C})},
    T.RETRY: {F: frozenset({Q}), C: frozenset({Q})},
}


assert set(TRANSITIONS) == set(Transition)
# The transitions that end a running attempt in failure: they read its counted failures.
FAILURE_TRANSITIONS = frozenset({T.FAIL, T.LOSE})


class IllegalTransition(Exception):
    def __init__(self, transition: Transition, status: str) -> None:
        super().__init__(f"a {status} job cannot {transition.replace('_', ' ')}")
        self.transition, self.status = transition, status


def allowed(transition: Transition, status: str) -> bool:
    return JobStatus(status) in TRANSITIONS[transition]


def _require(job: Job, transition: Transition) -> frozenset[JobStatus]:
    targets = TRANSITIONS[transition].get(JobStatus(job.status))
    if targets is None:
        raise IllegalTransition(transition, job.status)
    return targets


def _move(job: Job, transition: Transition, to: JobStatus) -> None:
    assert to in _require(job, transition), f"{transition} may not leave a job {to}"
    job.status = to


@dataclass(frozen=True)
class Claim:
    """A job locked together with the attempt that owns it, and how many of the job's attempts
    have used up its budget so far."""

    job: Job
    attempt: Attempt
    counted_failures: int = 0


# --- queued → running ---------------------------------------------------------------------


def claim(session: Session, job_id: uuid.UUID, worker_name: str, pid: int, start_iteration: int = 0) -> Claim | None:
    """Take a queued job for one attempt. None if it is not queued or not yet due (a duplicate
    or early dispatch): only one attempt of a job ever runs at a time."""
    job = jobs_repo.get(session, job_id, for_update=True)
    if job is None or not is_due(job, utcnow()):
        return None
    attempt = start_attempt(job, worker_name, pid, start_iteration)
    session.add(attempt)
    session.flush()
    job.current_attempt_id = attempt.id
    return Claim(job, attempt)


def is_due(job: Job, now: datetime) -> bool:
    return allowed(T.CLAIM, job.status) and (job.not_before is None or job.not_before <= now)


def start_attempt(job: Job, worker_name: str, pid: int, start_iteration: int = 0) -> Attempt:
    """The in-memory half of `claim`: the job runs a new attempt (its id is set on flush)."""
    now = utcnow()
    _move(job, T.CLAIM, R)
    job.attempts += 1
    attempt = Attempt(
        job_id=job.id,
        number=job.attempts,
        status=AttemptStatus.RUNNING,
        worker_name=worker_name,
        pid=pid,
        start_iteration=start_iteration,
        started_at=now,
        heartbeat_at=now,
    )
    job.not_before = None
    job.started_at = job.started_at or now
    job.updated_at = job.last_progress_at = now
    job.error_type = job.error_message = None
    job.message = f"attempt {attempt.number} started on {worker_name}"
    return attempt


def lock_owned(session: Session, job_id: uuid.UUID, attempt_id: int, *, count_failures: bool = True) -> Claim | None:
    """The job and its attempt, locked in that order (job, then attempt: the one lock order),
    if that attempt still owns the job. `count_failures=False` skips counting the attempts
    that used up the budget, for an end that does not need it (success, cancel, preemption)."""
    job = jobs_repo.get(session, job_id, for_update=True)
    if job is None or not job.owned_by(attempt_id):
        return None
    attempt = attempts_repo.get(session, attempt_id, for_update=True)
    if attempt is None or AttemptStatus(attempt.status).is_finished:
        return None
    return Claim(job, attempt, attempts_repo.counted_failures(session, job.id) if count_failures else 0)


# --- running → running: progress, fenced on ownership -------------------------------------


def record_progress(session: Session, job_id: uuid.UUID, attempt_id: int, values: dict, event: dict) -> bool:
    """Write progress on the job row, and `event` in its history, if this attempt still owns
    it: one statement. False: fenced, nothing written."""
    return progress_repo.record(session, job_id, attempt_id, values, event)


# --- the ends of an attempt ---------------------------------------------------------------


def _close_attempt(
    attempt: Attempt,
    status: AttemptStatus,
    now: datetime,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    attempt.status, attempt.finished_at = status, now
    attempt.error_type, attempt.error_message = error_type, error_message


def _finish(job: Job, transition: Transition, to: JobStatus, now: datetime, message: str) -> None:
    _move(job, transition, to)
    job.message, job.current_attempt_id = message, None
    job.finished_at = job.updated_at = now


def succeed(session: Session, claim: Claim, message: str = "done") -> None:
    _require(claim.job, T.SUCCEED)
    now = utcnow()
    _close_attempt(claim.attempt, AttemptStatus.SUCCEEDED, now)
    _finish(claim.job, T.SUCCEED, S, now, message)
    claim.job.percent = 100.0


def cancel(session: Session, claim: Claim, message: str) -> None:
    """Phase two of cancel: the running attempt stopped at a clean point, or was killed."""
    _require(claim.job, T.CANCEL)
    now = utcnow()
    _close_attempt(claim.attempt, AttemptStatus.CANCELED, now)
    _finish(claim.job, T.CANCEL, C, now, message)


def preempt(session: Session, claim: Claim) -> bool:
    """The worker is stopping: back to the front of the queue without using up an attempt.
    True if the job was re-queued (its dispatch is sent after commit)."""
    now = utcnow()
    job = claim.job
    _require(job, T.PREEMPT)
    _close_attempt(claim.attempt, AttemptStatus.PREEMPTED, now)
    if job.cancel_requested_at is not None:
        _finish(job, T.PREEMPT, C, now, "canceled while the worker stopped")
        return False
    _move(job, T.PREEMPT, Q)
    job.current_attempt_id, job.updated_at = None, now
    job.message = "checkpointed: worker stopping; waiting for a worker to resume"
    dispatch.prepare(session, job, at_front=True)
    return True


def fail(
    session: Session,
    claim: Claim,
    settings: Settings,
    *,
    error_type: str,
    error_message: str,
    retryable: bool,
) -> None:
    """End the attempt in failure. A retryable failure re-queues the job with backoff while its
    attempt budget lasts; the reconciler dispatches it when it is due."""
    _end_in_failure(claim, settings, T.FAIL, AttemptStatus.FAILED, error_type, error_message, retryable)


def lose(session: Session, claim: Claim, settings: Settings, message: str) -> None:
    """The attempt's worker is gone (the reaper saw its heartbeat stop, or the job process saw
    its parent die). Always retryable while the budget lasts."""
    _end_in_failure(claim, settings, T.LOSE, AttemptStatus.LOST, "WorkerLost", message, retryable=True)


def close_orphan(session: Session, attempt: Attempt) -> None:
    """A stale attempt that no longer owns its job: only the attempt row is closed."""
    _close_attempt(attempt, AttemptStatus.LOST, utcnow())


def _end_in_failure(
    claim: Claim,
    settings: Settings,
    transition: Transition,
    attempt_status: AttemptStatus,
    error_type: str,
    error_message: str,
    retryable: bool,
) -> None:
    now = utcnow()
    job = claim.job
    _require(job, transition)
    _close_attempt(claim.attempt, attempt_status, now, error_type, error_message)
    if job.cancel_requested_at is not None:
        _finish(job, transition, C, now, f"canceled ({error_type} while stopping)")
        return
    failures = claim.counted_failures + (1 if attempt_status.uses_budget else 0)
    job.error_type, job.error_message = error_type, error_message
    if retryable and failures < job.max_attempts:
        delay = backoff_seconds(failures, settings.retry_backoff_base_s, settings.retry_backoff_max_s)
        _move(job, transition, Q)
        job.current_attempt_id, job.updated_at = None, now
        job.not_before = now + timedelta(seconds=delay)
        job.rq_job_id = job.enqueued_at = None
        job.message = f"attempt {claim.attempt.number} {attempt_status}: {error_type}; retry in {delay:.0f}s"
        return
    _finish(job, transition, F, now, f"{error_type}: {error_message}")


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, times a factor in [0.5, 1.5)."""
    raw = min(cap, base * (2 ** max(0, failures - 1)))
    return raw * random.uniform(0.5, 1.5)


# --- a user's moves -----------------------------------------------------------------------


def request_cancel(session: Session, job: Job) -> None:
    """Phase one of cancel. A queued job is canceled at once and its dispatch is taken out of
    Redis after commit; a running one gets a durable request its attempt acts on."""
    now = utcnow()
    if JobStatus(job.status) is Q:
        dispatch.withdraw(session, job)
        _finish(job, T.REQUEST_CANCEL, C, now, "canceled while queued")
    else:
        _move(job, T.REQUEST_CANCEL, R)
        job.message, job.updated_at = "cancel requested", now
    job.cancel_requested_at = job.cancel_requested_at or now


def retry(session: Session, job: Job, *, counted_failures: int, max_attempts: int) -> None:
    """A user queues a failed or canceled job again with a fresh attempt budget; its attempt
    history and its trials stay."""
    _move(job, T.RETRY, Q)
    job.finished_at, job.cancel_requested_at, job.not_before = None, None, None
    job.error_type = job.error_message = None
    job.max_attempts = counted_failures + max_attempts
    job.message, job.updated_at = "retry requested; waiting for a worker", utcnow()
    dispatch.prepare(session, job)
