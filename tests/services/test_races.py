"""Concurrency and bookkeeping edges of the lifecycle against the real PostgreSQL and Redis:
one lock order, admission under concurrency, and RQ's registry of dead executions."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import timedelta

from sqlalchemy import func, select, text, update

from app import queue
from app.clock import utcnow
from app.db import get_engine, session_factory
from app.loop_pool import LoopPool
from app.models import Attempt, Job
from app.services import jobs as jobs_service
from app.services import lifecycle, maintenance
from app.services.candles import KeptChecks
from app.services.dispatch import LoopWork
from app.services.jobs import QueueFull
from app.status import JobStatus
from tests.support import wait_until


def _queued_smoke(db, settings) -> Job:
    job = jobs_service.start_smoke(db, settings, priority="normal")
    db.commit()
    return job


def test_reaper_locks_the_job_before_the_attempt_like_every_other_writer(db, redis, clean):
    """A job process ending its attempt (or a worker killing a canceled job) locks the job,
    then the attempt. The reaper must take them in the same order, or the two deadlock."""
    # The reaper holds off for a stale bound after its process first reaches PostgreSQL and after
    # PostgreSQL (re)starts (an earlier test may have restarted it): let that grace pass first.
    maintenance.run_once(clean, redis)
    wait_until(lambda: maintenance._reaping_allowed(db, clean), timeout=60, what="the reaper's grace to pass")
    db.rollback()
    job = _queued_smoke(db, clean)
    claim = lifecycle.claim(db, job.id, "ghost-worker", 1)
    assert claim is not None
    attempt_id = claim.attempt.id
    db.commit()
    db.execute(update(Attempt).where(Attempt.id == attempt_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    db.commit()

    outcome: dict = {}

    def reap() -> None:
        try:
            outcome["report"] = maintenance.run_once(clean, redis)
        except Exception as exc:  # reported to the test below
            outcome["error"] = exc

    with get_engine(clean.database_url).connect() as writer, writer.begin():
        writer.execute(text("SET LOCAL lock_timeout = '20s'"))
        writer.execute(select(Job.id).where(Job.id == job.id).with_for_update())  # job first
        writer_pid = writer.execute(text("SELECT pg_backend_pid()")).scalar()
        reaper = threading.Thread(target=reap)
        reaper.start()
        wait_until(
            lambda: db.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND pid <> :me AND datname = current_database()"
                ),
                {"me": writer_pid},
            ).scalar(),
            timeout=20,
            what="the reaper waiting for the job's lock",
        )
        db.rollback()
        writer.execute(select(Attempt.id).where(Attempt.id == attempt_id).with_for_update())  # then attempt
    reaper.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["report"].reaped == [str(job.id)]
    db.expire_all()
    assert db.get(Job, job.id).status == JobStatus.QUEUED


def test_concurrent_starts_cannot_exceed_max_queued_jobs(clean):
    """Admission counts queued jobs then inserts one; concurrent starts must not all count
    before any of them commits."""
    limit, contenders = 3, 8
    settings = clean.model_copy(update={"max_queued_jobs": limit})
    counted = threading.Barrier(contenders, timeout=2)
    refused: list[int] = []

    def start(i: int) -> None:
        with session_factory(settings.database_url)() as session:
            try:
                jobs_service.start_smoke(session, settings, priority="normal", n=i)
            except QueueFull:
                refused.append(i)
                session.rollback()
                return
            finally:  # hold every admitted transaction open until all have counted (or 2 s passed)
                with contextlib.suppress(threading.BrokenBarrierError):
                    counted.wait()
            session.commit()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with session_factory(settings.database_url)() as session:
        queued = session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED))
    assert queued == limit, f"{queued} jobs admitted against a limit of {limit}"
    assert len(refused) == contenders - limit


def test_concurrent_starts_on_the_event_loop_cannot_exceed_max_queued_jobs(clean):
    """The API's start: lock, count and insert go to the server as one query string each; twelve
    sent at once, on twelve connections, against a limit of three."""
    limit, contenders = 3, 12
    settings = clean.model_copy(update={"max_queued_jobs": limit})

    async def main() -> list[bool]:
        pool, checks = LoopPool(settings.database_url, contenders), KeptChecks()

        async def start(i: int) -> bool:
            async with pool.connection() as conn:
                try:
                    await jobs_service.start_from_loop(
                        LoopWork(conn),
                        settings,
                        checks,
                        kind="smoke",
                        priority="normal",
                        params={"n": i},
                        idempotency_key=None,
                    )
                except QueueFull:
                    return False
                return True

        try:
            return await asyncio.gather(*(start(i) for i in range(contenders)))
        finally:
            await pool.close()

    admitted = asyncio.run(main())
    with session_factory(settings.database_url)() as session:
        queued = session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED))
    assert queued == limit == admitted.count(True), f"{queued} jobs admitted against a limit of {limit}"


def test_expired_started_registry_entries_do_not_count_as_present(redis, clean):
    registry = queue.get_queue(redis, "normal").started_job_registry.key
    now = time.time()
    redis.zadd(registry, {"dead:exec-1": now - 60, "alive:exec-1": now + 60, "dead-old-style": now - 60})
    assert queue.is_present(redis, "alive", "normal")
    assert not queue.is_present(redis, "dead", "normal")
    assert not queue.is_present(redis, "dead-old-style", "normal")


def test_reconciler_redispatches_a_job_whose_only_trace_is_an_expired_execution(db, redis, clean):
    """A worker popped the dispatch and died before claiming: RQ's started registry still lists
    the execution (expired) until its own cleanup, minutes later. The job must not wait."""
    job = _queued_smoke(db, clean)
    db.execute(update(Job).where(Job.id == job.id).values(enqueued_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    registry = queue.get_queue(redis, "normal").started_job_registry.key
    redis.zadd(registry, {f"{job.rq_job_id}:exec-1": time.time() - 5})
    report = maintenance.run_once(clean, redis)
    assert report.redispatched == [str(job.id)]
    assert redis.llen("rq:queue:training") == 1
