"""The reaper and the reconciler, driven directly against the real PostgreSQL and Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from redis.connection import AbstractConnection
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import OperationalError

from app import queue
from app.clock import utcnow
from app.db import get_engine
from app.models import Attempt, Job
from app.repositories import jobs as jobs_repo
from app.services import dispatch, lifecycle, maintenance
from app.services import jobs as jobs_service
from app.services.maintenance import LOCK_KEY, ReaperGrace
from app.status import AttemptStatus, JobStatus
from tests.support import wait_until


@pytest.fixture(autouse=True)
def reaper_connected(clean):
    """This process's reaper has held PostgreSQL for longer than the stale bound, and the
    server has been up that long (fault tests restart it), so its grace period is over."""
    ReaperGrace.regained_at = time.monotonic() - 10 * clean.heartbeat_stale_s

    def server_up_long_enough():
        with get_engine(clean.database_url).connect() as conn:
            up = conn.execute(text("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")).scalar_one()
        return float(up) >= clean.heartbeat_stale_s

    wait_until(server_up_long_enough, timeout=3 * clean.heartbeat_stale_s, interval=0.2, what="PostgreSQL up")
    yield
    ReaperGrace.regained_at = None


def queued_job(db, settings, max_attempts: int | None = None) -> Job:
    job = jobs_service.start(db, settings, kind="smoke", priority="normal", params={}, idempotency_key=None).job
    if max_attempts is not None:
        job.max_attempts = max_attempts
    db.commit()
    return job


def running_with_stale_heartbeat(db, settings, max_attempts: int | None = None) -> Job:
    job = queued_job(db, settings, max_attempts)
    claim = lifecycle.claim(db, job.id, "ghost-worker", 1)
    assert claim is not None
    db.commit()
    db.execute(update(Attempt).where(Attempt.job_id == job.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    db.commit()
    return job


def fresh(db, job_id) -> Job:
    db.expire_all()
    return db.get(Job, job_id)


def test_lost_attempt_is_requeued_with_backoff_then_redispatched(db, redis, clean):
    job = running_with_stale_heartbeat(db, clean)
    report = maintenance.run_once(clean, redis)
    assert report.ran and report.reaped == [str(job.id)]
    row = fresh(db, job.id)
    assert row.status == JobStatus.QUEUED and row.rq_job_id is None and row.not_before > utcnow()
    attempt = db.scalars(select(Attempt).where(Attempt.job_id == job.id)).one()
    assert (
        attempt.status == AttemptStatus.LOST
        and attempt.error_type == "WorkerLost"
        and "ghost-worker" in attempt.error_message
    )
    # Not due yet: nothing is sent.
    assert maintenance.run_once(clean, redis).redispatched == []
    db.execute(update(Job).where(Job.id == job.id).values(not_before=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert maintenance.run_once(clean, redis).redispatched == [str(job.id)]
    row = fresh(db, job.id)
    assert queue.is_present(redis, row.rq_job_id, "normal")
    # Present now: a second pass does not send it twice.
    db.execute(update(Job).where(Job.id == job.id).values(enqueued_at=utcnow() - timedelta(minutes=5)))
    db.commit()
    assert maintenance.run_once(clean, redis).redispatched == []
    assert redis.llen("rq:queue:training") == 1


def test_reaper_waits_a_stale_bound_after_regaining_postgresql(db, redis, clean, postgres):
    """After an outage no heartbeat could land: nothing is declared lost until this reaper has
    been connected again for a full stale bound; then the truly stale attempt is."""
    job = running_with_stale_heartbeat(db, clean)
    db.close()
    postgres.stop()
    try:
        with pytest.raises(OperationalError):
            maintenance.run_once(clean, redis)
        assert ReaperGrace.regained_at is None
    finally:
        postgres.start()
    report = maintenance.run_once(clean, redis)
    assert report.ran and report.reaped == []
    assert fresh(db, job.id).status == "running"
    ReaperGrace.regained_at = time.monotonic() - clean.heartbeat_stale_s  # connected a full bound
    assert maintenance.run_once(clean, redis).reaped == [], "PostgreSQL itself restarted moments ago"
    wait_until(lambda: maintenance.run_once(clean, redis).reaped, timeout=4 * clean.heartbeat_stale_s, interval=0.5)
    assert fresh(db, job.id).status == "queued"


def test_exhausted_attempts_fail_the_job_with_worker_lost(db, redis, clean):
    job = running_with_stale_heartbeat(db, clean, max_attempts=1)
    maintenance.run_once(clean, redis)
    row = fresh(db, job.id)
    assert row.status == JobStatus.FAILED and row.error_type == "WorkerLost" and row.finished_at is not None


def test_lost_attempt_of_a_job_being_canceled_ends_canceled(db, redis, clean):
    job = running_with_stale_heartbeat(db, clean)
    jobs_service.cancel(db, job.id)
    db.commit()
    maintenance.run_once(clean, redis)
    assert fresh(db, job.id).status == JobStatus.CANCELED


def test_backoff_grows_and_is_capped():
    samples = [lifecycle.backoff_seconds(n, 5, 300) for n in (1, 2, 3, 10) for _ in range(50)]
    first, second, third, tenth = (samples[i * 50 : (i + 1) * 50] for i in range(4))
    assert min(first) >= 2.5 and max(first) < 7.5
    assert min(second) >= 5 and max(second) < 15
    assert min(third) >= 10
    assert max(tenth) < 450 and min(tenth) >= 150
    assert len(set(first)) > 1, "jitter"


def test_reconciler_sends_a_job_redis_never_got(db, redis, clean):
    job = queued_job(db, clean)  # committed, never sent (as if Redis were down at submit)
    db.execute(update(Job).where(Job.id == job.id).values(enqueued_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    report = maintenance.run_once(clean, redis)
    assert report.redispatched == [str(job.id)]
    assert redis.llen("rq:queue:training") == 1


def test_only_one_pass_runs_at_a_time(db, redis, clean):
    with get_engine(clean.database_url).connect() as other, other.begin():
        assert other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar()
        assert maintenance.run_once(clean, redis).ran is False
    assert maintenance.run_once(clean, redis).ran is True


def test_claim_is_exclusive(db, clean):
    job = queued_job(db, clean)
    assert lifecycle.claim(db, job.id, "a", 1) is not None
    db.commit()
    assert lifecycle.claim(db, job.id, "b", 2) is None, "a second dispatch of a running job does nothing"
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Attempt).where(Attempt.job_id == job.id)) == 1


def test_reconciler_checks_many_dispatches_in_one_read_per_priority(db, redis, clean, monkeypatch):
    """Thirty queued jobs across the three priorities, each sent: those whose dispatch left
    Redis (taken off the list, or only an expired execution left in the started registry) are
    sent again, the rest are not, and the presence check reads each priority's lists once."""
    jobs = []
    for i in range(30):
        priority = ("high", "normal", "low")[i % 3]
        job = jobs_service.start(db, clean, kind="smoke", priority=priority, params={}, idempotency_key=None).job
        dispatch.commit_and_send(db, redis, clean)
        jobs.append(job)
    db.execute(update(Job).values(enqueued_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    now = time.time()
    gone = []
    for job in jobs[:6]:  # taken off its list, never run
        q = queue.get_queue(redis, job.priority)
        assert redis.lrem(q.key, 0, job.rq_job_id) == 1
        gone.append(str(job.id))
    for job, expiry in ((jobs[6], now - 60), (jobs[7], now + 600)):  # popped: a dead and a live execution
        q = queue.get_queue(redis, job.priority)
        redis.lrem(q.key, 0, job.rq_job_id)
        redis.zadd(q.started_job_registry.key, {f"{job.rq_job_id}:exec-1": expiry})
    gone.append(str(jobs[6].id))

    sent, send = [], AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command)
        return send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    asked = [(job.rq_job_id, job.priority) for job in jobs]
    assert queue.present(redis, asked) == {job.rq_job_id for job in jobs} - {
        job.rq_job_id for job in jobs if str(job.id) in gone
    }
    assert len(sent) == 3, "one MULTI … EXEC per priority"
    monkeypatch.undo()

    report = maintenance.run_once(clean, redis)
    assert sorted(report.redispatched) == sorted(gone)
    assert sum(redis.llen(queue.get_queue(redis, p).key) for p in ("high", "normal", "low")) == 22 + len(gone)


def insert_queued(db, n: int) -> list:
    """`n` queued jobs over the three priorities, dispatched a minute ago (none sent to Redis),
    one second apart: their (id, rq_job_id, priority), oldest first."""
    db.execute(
        text(
            "INSERT INTO training_jobs (id, kind, status, priority, params, percent, attempts, max_attempts,"
            " rq_job_id, enqueued_at, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'smoke', 'queued', (ARRAY['high','normal','low'])[1 + i % 3], '{}',"
            " 0, 0, 3, 'd' || i, now() - interval '1 minute', now() - (:n - i) * interval '1 second', now()"
            " FROM generate_series(1, :n) AS i"
        ),
        {"n": n},
    )
    db.commit()
    return db.execute(select(Job.id, Job.rq_job_id, Job.priority).order_by(Job.created_at)).all()


def test_reconciler_looks_past_the_oldest_five_hundred_queued_jobs(db, redis, clean, monkeypatch):
    """1,201 queued jobs over the three priorities, every dispatch in Redis but the newest
    one's: the first pass sends that one again (and nothing else), reading Redis once per
    priority."""
    rows = insert_queued(db, 1201)
    for priority in ("high", "normal", "low"):
        ids = [rq_job_id for _, rq_job_id, p in rows if p == priority and rq_job_id != rows[-1].rq_job_id]
        redis.rpush(queue.get_queue(redis, priority).key, *ids)
    newest = rows[-1]

    sent, send = [], AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(b"".join(command) if isinstance(command, list) else command)
        return send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    report = maintenance.run_once(clean, redis)
    monkeypatch.undo()
    assert report.redispatched == [str(newest.id)]
    assert len([packet for packet in sent if b"LRANGE" in packet]) == 3, "Redis read once per priority"
    assert fresh(db, newest.id).rq_job_id in {
        m.decode() for m in redis.lrange(queue.get_queue(redis, newest.priority).key, 0, -1)
    }


def test_reconciler_sends_nothing_for_a_job_that_changed_while_it_looked(db, redis, clean, monkeypatch):
    """Redis is read first, then the rows (unlocked), then the lost ones are locked: a job
    claimed while Redis was read, or sent again after the rows were read, is not sent again;
    only a row still queued with the dispatch Redis did not hold is."""
    claimed, resent, lost = (queued_job(db, clean) for _ in range(3))  # never sent: absent from Redis
    db.execute(update(Job).values(enqueued_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    held, dispatches = queue.held, jobs_repo.queued_dispatches

    def elsewhere(statement) -> None:
        with get_engine(clean.database_url).begin() as other:
            other.execute(statement)

    def held_meanwhile(connection):
        found = held(connection)
        elsewhere(update(Job).where(Job.id == claimed.id).values(status=JobStatus.RUNNING))
        return found

    def read_meanwhile(*args, **kwargs):
        pages = list(dispatches(*args, **kwargs))
        assert sorted(job_id for page in pages for job_id, _ in page) == sorted([resent.id, lost.id])
        elsewhere(update(Job).where(Job.id == resent.id).values(rq_job_id="sent-meanwhile", enqueued_at=utcnow()))
        yield from pages

    monkeypatch.setattr(queue, "held", held_meanwhile)
    monkeypatch.setattr(jobs_repo, "queued_dispatches", read_meanwhile)
    report = maintenance.run_once(clean, redis)
    assert report.redispatched == [str(lost.id)]
    assert fresh(db, claimed.id).status == JobStatus.RUNNING and fresh(db, resent.id).rq_job_id == "sent-meanwhile"
    assert redis.llen("rq:queue:training") == 1


def test_when_redis_lost_everything_every_queued_job_is_sent_again_within_a_few_passes(db, redis, clean):
    """1,201 queued, Redis holds none of them: the oldest 500 are sent again each pass, so all
    are back in Redis after three passes, each once."""
    rows = insert_queued(db, 1201)
    sent = [maintenance.run_once(clean, redis).redispatched for _ in range(4)]
    assert [len(batch) for batch in sent] == [500, 500, 201, 0]
    assert [job_id for batch in sent for job_id in batch] == [str(row.id) for row in rows], "oldest first, once"
    assert sum(redis.llen(queue.get_queue(redis, p).key) for p in ("high", "normal", "low")) == 1201
