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

from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.db import transaction
from app.execution.context import JobContext
from app.execution.errors import AttemptTimeout, Canceled, Fenced, JobInputError, Preempted, Stalled, WorkerLost
from app.execution.heartbeat import Heartbeat
from app.kinds import get_kind, limits
from app.logs import job_context
from app.queue import redis_connection
from app.services import dispatch, lifecycle
from app.settings import Settings

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, RedisError, ConnectionError, TimeoutError)
ResultWriter = Callable[[Session], None]


def run_job(settings: Settings, job_id: str, worker_name: str, parent_pid: int) -> str:
    with job_context(job_id):
        return _run(settings, uuid.UUID(job_id), worker_name, parent_pid)


def _run(settings: Settings, job_id: uuid.UUID, worker_name: str, parent_pid: int) -> str:
    with transaction(settings.database_url) as session:
        claim = lifecycle.claim(session, job_id, worker_name, os.getpid())
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
        writer = kind.load_handler()(ctx)
        outcome = _end(settings, ctx, "succeeded", writer=writer)
    except Canceled:
        outcome = _end(settings, ctx, "canceled")
    except Preempted:
        outcome = _end(settings, ctx, "preempted")
    except Fenced:
        log.warning("attempt %d was superseded; stopping without writing", ctx.attempt_number)
        outcome = "fenced"
    except WorkerLost as exc:
        outcome = _end(settings, ctx, "lost", error=exc)
    except JobTimeoutException as exc:
        error: BaseException = exc
        if heartbeat.reason == "stalled":
            error = Stalled(f"no progress for {heartbeat.stall_timeout_s:.0f}s")
        elif heartbeat.reason == "timeout":
            error = AttemptTimeout(f"attempt ran past its hard timeout of {heartbeat.timeout_s:.0f}s")
        outcome = _end(settings, ctx, "transient", error=error)
    except JobInputError as exc:
        outcome = _end(settings, ctx, "failed", error=exc)
    except (DBAPIError, *TRANSIENT) as exc:
        outcome = _end(settings, ctx, "transient", error=exc)
    except Exception as exc:
        log.exception("job raised")
        outcome = _end(settings, ctx, "failed", error=exc)
    finally:
        heartbeat.stop()
    log.info("attempt %d ended: %s", ctx.attempt_number, outcome)
    return outcome


def _end(
    settings: Settings,
    ctx: JobContext,
    outcome: str,
    *,
    error: BaseException | None = None,
    writer: ResultWriter | None = None,
) -> str:
    """Write the end of the attempt, riding out a short PostgreSQL outage. If the database
    stays away, give up: the reaper will find the attempt's heartbeat stale."""
    deadline = time.monotonic() + max(30.0, settings.heartbeat_stale_s)
    delay = 0.5
    while True:
        try:
            return _end_once(settings, ctx, outcome, error, writer)
        except OperationalError as exc:
            if time.monotonic() > deadline:
                log.error("could not record the end of the attempt: %s", exc)
                return "unrecorded"
            log.warning("PostgreSQL unavailable while ending the attempt; retrying: %s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _end_once(
    settings: Settings, ctx: JobContext, outcome: str, error: BaseException | None, writer: ResultWriter | None
) -> str:
    requeued = None
    with transaction(settings.database_url) as session:
        claim = lifecycle.lock_current(session, ctx.job_id, ctx.attempt_id)
        if claim is None:
            return "fenced"
        error_type = type(error).__name__ if error else None
        message = str(error)[:2000] if error else None
        if outcome == "succeeded":
            if writer is not None:
                writer(session)
            lifecycle.succeed(claim)
        elif outcome == "canceled":
            lifecycle.cancel(claim, "canceled: stopped at a clean point")
        elif outcome == "preempted":
            lifecycle.preempt(claim)
            if claim.job.status == "queued":
                requeued = claim.job
        elif outcome == "lost":
            lifecycle.fail(
                claim,
                settings,
                error_type="WorkerLost",
                error_message=message or "worker lost",
                retryable=True,
                attempt_status="lost",
            )
        else:
            lifecycle.fail(
                claim,
                settings,
                error_type=error_type or "Error",
                error_message=message or "",
                retryable=outcome == "transient",
            )
        final = claim.job.status
    if requeued is not None:
        dispatch.send(redis_connection(settings.redis_url), requeued, settings, at_front=True)
    return f"{outcome} → job {final}"
