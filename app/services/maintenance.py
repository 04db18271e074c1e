"""The reaper and the reconciler: one pass at a time across all processes (a PostgreSQL
advisory lock), run by every worker every few seconds.

- Reaper: an attempt whose heartbeat is older than `heartbeat_stale_s` is lost; its job is
  re-queued with backoff (attempt counted) or failed once attempts are exhausted, and RQ's
  started registry forgets the dispatch so `rq info` stays true.
- Reconciler: a job `queued` in PostgreSQL, due, whose dispatch is in no queue in Redis
  (Redis was down at submit, lost its data, or a worker popped it and died) is dispatched
  again. A duplicate dispatch is harmless: only one can claim the job.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from app import queue
from app.clock import utcnow
from app.db import transaction
from app.models import Job
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.services import dispatch, lifecycle
from app.settings import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x7472_6164  # "trad"


@dataclass
class PassReport:
    ran: bool = False
    reaped: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)


def run_once(settings: Settings, connection: Redis) -> PassReport:
    report = PassReport()
    to_send: list[Job] = []
    stale_dispatches: list[tuple[str, str]] = []
    with transaction(settings.database_url) as session:
        if not session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY))):
            return report
        report.ran = True
        now = utcnow()
        for attempt in attempts_repo.stale_running(session, now - timedelta(seconds=settings.heartbeat_stale_s)):
            claim = lifecycle.lock_current(session, attempt.job_id, attempt.id)
            if claim is None:  # not the job's current attempt any more: just close it
                attempt.status, attempt.finished_at = "lost", now
                continue
            if claim.job.rq_job_id:
                stale_dispatches.append((claim.job.rq_job_id, claim.job.priority))
            age = (now - attempt.heartbeat_at).total_seconds()
            lifecycle.fail(
                claim,
                settings,
                error_type="WorkerLost",
                attempt_status="lost",
                retryable=True,
                error_message=f"worker {attempt.worker_name} lost: no heartbeat for {age:.0f}s",
            )
            report.reaped.append(str(attempt.job_id))
            log.warning(
                "attempt %d lost; job now %s", attempt.number, claim.job.status, extra={"job_id": str(attempt.job_id)}
            )
        try:
            to_send = _reconcile(session, connection, settings, now)
        except RedisError as exc:
            log.warning("reconciler skipped: Redis unavailable: %s", exc)
    for job in to_send:
        if dispatch.send(connection, job, settings):
            report.redispatched.append(str(job.id))
    _forget_started(connection, stale_dispatches)
    return report


def _reconcile(session, connection: Redis, settings: Settings, now) -> list[Job]:
    grace = now - timedelta(seconds=settings.reconcile_grace_s)
    missing = []
    for job in jobs_repo.due_queued(session, now, grace):
        if job.rq_job_id and queue.is_present(connection, job.rq_job_id, job.priority):
            continue
        dispatch.prepare(job)
        missing.append(job)
        log.info("queued job absent from Redis: dispatching again", extra={"job_id": str(job.id)})
    return missing


def _forget_started(connection: Redis, dispatches: list[tuple[str, str]]) -> None:
    for rq_job_id, priority in dispatches:
        try:
            rq_job = RQJob.fetch(rq_job_id, connection=connection, serializer=JSONSerializer)
            queue.get_queue(connection, priority).started_job_registry.remove_executions(rq_job)
        except Exception as exc:  # the RQ record may be gone already
            log.debug("started registry not cleaned for %s: %s", rq_job_id, exc)


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
            if report.reaped or report.redispatched:
                log.info("maintenance: reaped %s, redispatched %s", report.reaped, report.redispatched)

    def stop(self) -> None:
        self._stopped.set()
