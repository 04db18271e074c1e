"""The job process's side of an attempt: claim, run the kind's handler, end the attempt.

Every write is fenced on the attempt id, so an attempt that lost its claim (reaped while it
was merely slow, or orphaned by a killed worker) can never overwrite a newer one or save a
second result.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from enum import Enum

from sqlalchemy.orm import Session

from app.execution import process, signals
from app.execution.context import JobContext
from app.execution.errors import (
    TRANSIENT_DB_ERRORS,
    TRANSIENT_ERRORS,
    AttemptStopped,
    AttemptTimeout,
    Canceled,
    Fenced,
    JobInputError,
    Preempted,
    Stalled,
    WorkerLost,
)
from app.execution.heartbeat import Heartbeat
from app.kinds import get_kind, limits
from app.logs import job_context
from app.queue import AttemptInterrupted
from app.retry import retry_until
from app.services import dispatch, lifecycle
from app.services.lifecycle import FAILURE_TRANSITIONS, Claim, Transition
from app.settings import Settings

# A kind's handler runs one attempt. It may return a writer that stores the result in the same
# transaction that marks the job succeeded.
ResultWriter = Callable[[Session], None]
Handler = Callable[[JobContext], ResultWriter | None]

log = logging.getLogger(__name__)


class End(Enum):
    """How an attempt ends, decided from what its handler returned or raised."""

    SUCCEED = "succeed"
    CANCEL = "cancel"  # a cancel request seen at a clean point
    PREEMPT = "preempt"  # the worker is stopping: checkpoint
    LOSE = "lose"  # the worker that forked this process is gone
    RETRY = "retry"  # transient: another attempt may succeed
    FAIL = "fail"  # deterministic: another attempt would fail the same way
    FENCED = "fenced"  # another attempt owns the job: write nothing


# The state machine's transition each end makes (a retryable failure is a `fail` that may queue
# the job again); FENCED makes none.
TRANSITION: dict[End, Transition | None] = {
    End.SUCCEED: Transition.SUCCEED,
    End.CANCEL: Transition.CANCEL,
    End.PREEMPT: Transition.PREEMPT,
    End.LOSE: Transition.LOSE,
    End.RETRY: Transition.FAIL,
    End.FAIL: Transition.FAIL,
    End.FENCED: None,
}


def classify(error: BaseException) -> End:
    """The end an exception from a handler leads to."""
    if isinstance(error, Canceled):
        return End.CANCEL
    if isinstance(error, Preempted):
        return End.PREEMPT
    if isinstance(error, Fenced):
        return End.FENCED
    if isinstance(error, WorkerLost):
        return End.LOSE
    if isinstance(error, (AttemptInterrupted, Stalled, AttemptTimeout, *TRANSIENT_ERRORS)):
        return End.RETRY
    return End.FAIL


# The ends whose transition reads the failure count.
_COUNTING_ENDS = frozenset(end for end, transition in TRANSITION.items() if transition in FAILURE_TRANSITIONS)

_ENDING: dict[Transition, Callable[[Session, Claim, Settings, BaseException | None, bool], None]] = {
    Transition.SUCCEED: lambda session, claim, settings, error, retryable: lifecycle.succeed(session, claim),
    Transition.CANCEL: lambda session, claim, settings, error, retryable: lifecycle.cancel(
        session, claim, "canceled: stopped at a clean point"
    ),
    Transition.PREEMPT: lambda session, claim, settings, error, retryable: lifecycle.preempt(session, claim),
    Transition.LOSE: lambda session, claim, settings, error, retryable: lifecycle.lose(
        session, claim, settings, (str(error) if error else "")[:2000] or "worker lost"
    ),
    Transition.FAIL: lambda session, claim, settings, error, retryable: _fail(
        session, claim, settings, error, retryable=retryable
    ),
}
assert set(_ENDING) == {t for t in TRANSITION.values() if t is not None}


def _fail(session: Session, claim: Claim, settings: Settings, error: BaseException | None, *, retryable: bool) -> None:
    lifecycle.fail(
        session,
        claim,
        settings,
        error_type=type(error).__name__ if error else "Error",
        error_message=str(error)[:2000] if error else "",
        retryable=retryable,
    )


def run_job(settings: Settings, job_id: str, worker_name: str, parent_pid: int) -> str:
    with job_context(job_id):
        return _run(settings, uuid.UUID(job_id), worker_name, parent_pid)


def _run(settings: Settings, job_id: uuid.UUID, worker_name: str, parent_pid: int) -> str:
    process.limit_memory(settings.job_memory_limit_mb)
    process.connected()
    with dispatch.unit_of_work(settings) as uow:
        claim = lifecycle.claim(uow.session, job_id, worker_name, os.getpid())
        if claim is None:
            log.info("job is not queued or not due; this dispatch has nothing to do")
            return "skipped"
        kind = get_kind(claim.job.kind)
        ctx = JobContext(
            settings,
            job_id=job_id,
            kind=kind.name,
            params=dict(claim.job.params),
            attempt_id=claim.attempt.id,
            attempt_number=claim.attempt.number,
            n_iterations=claim.job.n_iterations,
            parent_pid=parent_pid,
            worker_name=worker_name,
        )
    log.info("attempt %d started", ctx.attempt_number)
    kind_limits = limits(settings, kind.name)
    heartbeat = Heartbeat(
        settings,
        ctx.attempt_id,
        timeout_s=kind_limits.timeout_s,
        stall_timeout_s=kind_limits.stall_timeout_s,
        last_progress=lambda: ctx.last_progress_monotonic,
    )
    heartbeat.start()
    try:
        handler: Handler = kind.load_handler()
        writer = handler(ctx)
        heartbeat.ending()
        outcome = _end(settings, ctx, End.SUCCEED, writer=writer)
    except Exception as exc:  # a stop signal arrives as Preempted or AttemptInterrupted, both Exceptions
        heartbeat.ending()
        error = _interruption(heartbeat, exc) or exc
        end = classify(error)
        if end is End.FENCED:
            log.warning("attempt %d was superseded; stopping without writing", ctx.attempt_number)
            outcome = End.FENCED.value
        else:
            if end is End.FAIL and not isinstance(exc, JobInputError):
                log.exception("job raised")
            outcome = _end(settings, ctx, end, error=error)
    finally:
        heartbeat.stop()
    log.info("attempt %d ended: %s", ctx.attempt_number, outcome)
    return outcome


def _interruption(heartbeat: Heartbeat, exc: Exception) -> Exception | None:
    """What an interruption makes of the handler's error, whatever it turned into on its way up
    (an OperationalError where it cut a statement in half, a package's own error class where
    its code wrapped it): Stalled or AttemptTimeout when the watchdog sent it, else RQ's own
    timeout found among the error's causes. A controlled stop (cancel, checkpoint, fence, lost
    worker) keeps its meaning."""
    if isinstance(exc, AttemptStopped):
        return None
    if heartbeat.reason == "stalled":
        return Stalled(f"no progress for {heartbeat.stall_timeout_s:.0f}s")
    if heartbeat.reason == "timeout":
        return AttemptTimeout(f"attempt ran past its hard timeout of {heartbeat.timeout_s:.0f}s")
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and not any(cause is s for s in seen):
        if isinstance(cause, AttemptInterrupted):
            return cause
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return None


def _end(
    settings: Settings,
    ctx: JobContext,
    end: End,
    *,
    error: BaseException | None = None,
    writer: ResultWriter | None = None,
) -> str:
    """Write the end of the attempt, riding out a PostgreSQL outage for up to the outage budget
    (or, once the worker is stopping, until the stop budget runs out). If the database stays
    away, give up: the reaper will find the attempt's heartbeat stale once it is back."""

    def waiting(exc: Exception, delay: float) -> None:
        log.warning("PostgreSQL unavailable while ending the attempt; retrying: %s", exc)

    def stop_left() -> float:
        return signals.stop_deadline(settings.stop_budget_s) - time.monotonic()

    try:
        return retry_until(
            lambda: _end_once(settings, ctx, end, error, writer),
            retry_on=TRANSIENT_DB_ERRORS,
            budget_s=settings.db_outage_budget_s,
            on_retry=waiting,
            give_up=lambda: stop_left() <= 0,
            sleep=lambda delay: time.sleep(max(0.0, min(delay, stop_left()))),
        )
    except TRANSIENT_DB_ERRORS as exc:
        log.error("could not record the end of the attempt: %s", exc)
        return "unrecorded"


def _end_once(
    settings: Settings, ctx: JobContext, end: End, error: BaseException | None, writer: ResultWriter | None
) -> str:
    """One transaction: the ownership check, the result (if any), the transition; the
    re-dispatch of a preempted job is sent after commit."""
    with dispatch.unit_of_work(settings) as uow:
        claim = lifecycle.lock_owned(uow.session, ctx.job_id, ctx.attempt_id, count_failures=end in _COUNTING_ENDS)
        if claim is None:
            return End.FENCED.value
        if end is End.SUCCEED and writer is not None:
            writer(uow.session)
        _ENDING[TRANSITION[end]](uow.session, claim, settings, error, end is End.RETRY)
        final = claim.job.status
    return f"{end.value} → job {final}"
