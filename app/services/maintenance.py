"""The reaper and the reconciler: one pass at a time across all processes (a PostgreSQL
advisory lock), run by every worker every few seconds.

- Reaper: an attempt whose heartbeat is older than `heartbeat_stale_s` is lost; its job is
  re-queued with backoff (attempt counted) or failed once attempts are exhausted, and RQ's
  started registry forgets the dispatch so `rq info` stays true.
- Grace after an outage: while PostgreSQL was unreachable no heartbeat could land, so the
  reaper declares nothing lost until it has itself been connected for a full stale bound
  (and PostgreSQL itself has been up that long), giving every live attempt time to beat.
- Reconciler: a job `queued` in PostgreSQL, due, whose dispatch is in no queue in Redis
  (Redis was down at submit, lost its data, or a worker popped it and died) is dispatched
  again. Every pass reads what Redis holds (one read per priority), then compares every such
  row with it, however long the queue (read a page at a time); only the lost ones are locked
  and sent, the oldest 500 a pass. A duplicate dispatch is harmless: only one can claim the
  job.
- Schedules: due cron schedules start their jobs (`app.services.schedules.fire_due`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import queue
from app.clock import utcnow
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.services import dispatch, lifecycle, schedules
from app.settings import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x7472_6164  # "trad"
RECONCILE_BATCH = 500  # lost dispatches sent again per pass, oldest first


@dataclass
class PassReport:
    ran: bool = False
    reaped: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)


class ReaperGrace:
    """When this process last regained PostgreSQL (monotonic clock; None: not yet, or lost)."""

    regained_at: float | None = None


def _reaping_allowed(session: Session, settings: Settings) -> bool:
    if time.monotonic() - (ReaperGrace.regained_at or 0.0) < settings.heartbeat_stale_s:
        return False
    up_for = session.scalar(select(func.extract("epoch", func.now() - func.pg_postmaster_start_time())))
    return float(up_for) >= settings.heartbeat_stale_s


def run_once(settings: Settings, connection: Redis, now: datetime | None = None) -> PassReport:
    """One pass; `now` (default: the clock) is the instant it acts at."""
    try:
        return _run_once(settings, connection, now)
    except OperationalError:
        ReaperGrace.regained_at = None  # unreachable: no heartbeat can land either
        raise


def _run_once(settings: Settings, connection: Redis, now: datetime | None) -> PassReport:
    report = PassReport()
    stale_dispatches: list[tuple[str, str]] = []
    with dispatch.unit_of_work(settings, connection) as uow:
        session = uow.session
        got_lock = session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY)))
        if ReaperGrace.regained_at is None:
            ReaperGrace.regained_at = time.monotonic()
        if not got_lock:
            return report
        report.ran = True
        now = now or utcnow()
        cutoff = now - timedelta(seconds=settings.heartbeat_stale_s)
        stale = attempts_repo.stale_running(session, cutoff) if _reaping_allowed(session, settings) else []
        for job_id, attempt_id in stale:
            reaped, dead = _reap(session, settings, job_id, attempt_id, cutoff, now)
            if reaped:
                report.reaped.append(str(job_id))
            if dead is not None:
                stale_dispatches.append(dead)
        try:
            _reconcile(session, connection, settings, now)
        except RedisError as exc:
            log.warning("reconciler skipped: Redis unavailable: %s", exc)
        report.fired = [str(job_id) for job_id in schedules.fire_due(session, settings, now)]
    report.redispatched = [str(job_id) for job_id in uow.delivery.sent if str(job_id) not in report.fired]
    for rq_job_id, priority in stale_dispatches:
        queue.forget_started(connection, rq_job_id, priority)
    return report


def _reap(
    session: Session, settings: Settings, job_id, attempt_id: int, cutoff: datetime, now: datetime
) -> tuple[bool, tuple[str, str] | None]:
    """Declare one stale attempt lost. Locks the job, then the attempt (the one lock order),
    and looks again: the attempt may have ended or beaten since it was listed. Returns whether
    the job was reaped and its dead dispatch (id, priority) to take out of RQ's registry."""
    claim = lifecycle.lock_owned(session, job_id, attempt_id)
    if claim is None:  # not the job's current attempt any more: just close it, if still open
        attempt = attempts_repo.get(session, attempt_id, for_update=True)
        if attempt is not None and attempts_repo.is_stale(attempt, cutoff):
            lifecycle.close_orphan(session, attempt)
        return False, None
    attempt = claim.attempt
    if not attempts_repo.is_stale(attempt, cutoff):
        return False, None
    dead = (claim.job.rq_job_id, claim.job.priority) if claim.job.rq_job_id else None
    age = (now - attempt.heartbeat_at).total_seconds()
    lifecycle.lose(session, claim, settings, f"worker {attempt.worker_name} lost: no heartbeat for {age:.0f}s")
    log.warning("attempt %d lost; job now %s", attempt.number, claim.job.status, extra={"job_id": str(job_id)})
    return True, dead


def _reconcile(session: Session, connection: Redis, settings: Settings, now: datetime) -> None:
    """Redis first: a dispatch sent after this read is younger than the grace, so not listed."""
    held = queue.held(connection)
    grace = now - timedelta(seconds=settings.reconcile_grace_s)
    lost: list[tuple[uuid.UUID, str | None]] = []
    with contextlib.closing(jobs_repo.queued_dispatches(session, now, grace)) as pages:
        for page in pages:
            lost += [(job_id, rq_job_id) for job_id, rq_job_id in page if rq_job_id not in held]
            if len(lost) >= RECONCILE_BATCH:  # the rest next pass: each pass sends the oldest lost
                break
    for job in jobs_repo.lock_queued(session, lost[:RECONCILE_BATCH]):
        dispatch.prepare(session, job)
        log.info("queued job absent from Redis: dispatching again", extra={"job_id": str(job.id)})


class MaintenanceLoop(threading.Thread):
    """Runs the pass every `maintenance_interval_s` in a thread of a process that never forks
    (the API), so jobs are reaped and reconciled even while no worker is alive to do it."""

    def __init__(self, settings: Settings, connection: Redis) -> None:
        super().__init__(name="maintenance", daemon=True)
        self._settings, self._connection = settings, connection
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._settings.maintenance_interval_s):
            try:
                report = run_once(self._settings, self._connection)
            except Exception as exc:  # PostgreSQL or Redis away: try again next tick
                log.warning("maintenance pass failed: %s", exc)
                continue
            if report.reaped or report.redispatched or report.fired:
                log.info(
                    "maintenance: reaped %s, redispatched %s, fired %s",
                    report.reaped,
                    report.redispatched,
                    report.fired,
                )

    def stop(self) -> None:
        self._stopped.set()
