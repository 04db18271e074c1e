"""Stops that always stop, and exits that systemd can see: real worker processes, real signals
delivered while the worker is inside a maintenance pass, a job watch or a blocking pop, and
real Redis faults (stopped, refusing writes)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest
from sqlalchemy import text

from app.db import get_engine
from tests.faults.support import attempts, job, start, trial_numbers
from tests.support import child_pids, submit_smoke, wait_until

pytestmark = pytest.mark.faults


def waiting_on_lock(settings, query_prefix: str) -> bool:
    """A backend is blocked on a lock while running a query that starts with `query_prefix`."""
    with get_engine(settings.database_url).connect() as conn:
        return bool(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE :prefix AND pid <> pg_backend_pid()"
                ),
                {"prefix": query_prefix + "%"},
            )
        )


@contextlib.contextmanager
def table_locked(settings, table: str):
    """Hold ACCESS EXCLUSIVE on `table` (every query on it waits) until the block ends."""
    conn = get_engine(settings.database_url).connect()
    try:
        trans = conn.begin()
        conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield
        trans.rollback()
    finally:
        conn.close()


def exit_code(worker, timeout: float) -> int | None:
    try:
        return worker.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def test_sigterm_during_the_maintenance_pass_stops_the_worker(db, workers, clean):
    w1 = workers("w1")
    with table_locked(clean, "training_attempts"):
        wait_until(
            lambda: waiting_on_lock(clean, "SELECT training_attempts"), timeout=30, what="maintenance pass blocked"
        )
        w1.signal(signal.SIGTERM)
        code = exit_code(w1, 10)
        queued = submit_smoke(db, clean)
    assert code == 0, f"the stop was swallowed by the maintenance pass: {w1.log()[-3000:]}"
    assert "maintenance pass failed" not in w1.log()
    assert job(db, queued.id).status == "queued", "a stopped worker takes no new job"


def test_sigterm_during_the_blocking_pop_stops_the_worker(db, redis, workers, clean):
    w1 = workers("w1")
    wait_until(
        lambda: any(c.get("cmd") in ("blpop", "blmove", "bzpopmin") for c in redis.client_list()),
        timeout=30,
        what="worker in its blocking pop",
    )
    w1.signal(signal.SIGTERM)
    assert exit_code(w1, 10) == 0, w1.log()[-3000:]
    queued = submit_smoke(db, clean)
    assert job(db, queued.id).status == "queued"


def test_sigterm_during_the_job_watch_checkpoints(client, db, long_data, workers, clean):
    w1 = workers("w1")
    job_id = start(client, n_iterations=300)
    wait_until(lambda: (job(db, job_id).iteration or 0) >= 5, timeout=60, what="job running")
    db.close()
    with table_locked(clean, "training_jobs"):
        wait_until(
            lambda: waiting_on_lock(clean, "SELECT training_jobs.status, training_jobs.phase"),
            timeout=30,
            what="job watch blocked",
        )
        w1.signal(signal.SIGTERM)
        wait_until(lambda: "warm shut down requested" in w1.log(), timeout=10, what="stop request seen")
    assert exit_code(w1, 30) == 0, w1.log()[-3000:]
    assert job(db, job_id).status == "queued"
    assert [a.status for a in attempts(db, job_id)] == ["preempted"]


def test_worker_that_quits_unasked_exits_non_zero(db, redis, workers, clean):
    """Redis answering RQ's registry maintenance with an error (WRONGTYPE here; MISCONF or
    NOREPLICAS when it refuses writes) makes RQ's loop quit; the exit status must say so, so
    that `Restart=on-failure` brings the worker back."""
    redis.set("rq:finished:training-high", "not a sorted set")
    w1 = workers("w1")
    code = exit_code(w1, 30)
    assert code is not None, "RQ's loop quits on the error"
    assert "unhandled exception" in w1.log()
    assert code != 0, "a worker that stopped by itself must exit non-zero"
    redis.delete("rq:finished:training-high")
    smoke = submit_smoke(db, clean)
    workers("w2")  # what systemd does after a failure
    wait_until(lambda: job(db, smoke.id).status == "succeeded", timeout=60, what="the restarted worker runs jobs")


def test_sigterm_during_a_redis_outage_checkpoints(client, db, long_data, workers, redis_server, clean):
    """RQ records the stop request in Redis from its signal handler; with Redis down the worker
    must still wait for its job process to checkpoint instead of exiting and leaving it to be
    SIGKILLed (KillMode=mixed). The job process is held (its job row locked) so that the
    checkpoint cannot win the race by being quick."""
    w1 = workers("w1")
    job_id = start(client, n_iterations=150)
    wait_until(lambda: (job(db, job_id).iteration or 0) >= 5, timeout=60, what="job running")
    horse = child_pids(w1.pid)
    assert horse
    holder = get_engine(clean.database_url).connect()
    hold = holder.begin()
    holder.execute(text("SELECT id FROM training_jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
    wait_until(lambda: waiting_on_lock(clean, ""), timeout=30, what="job process held on its row")
    redis_server.stop()
    try:
        w1.signal(signal.SIGTERM)
        wait_until(lambda: "warm shut down requested" in w1.log(), timeout=10, what="stop request seen")
        code = exit_code(w1, 5)  # a worker that does not wait for its job process is gone by now
        if code is not None:
            kill(horse)  # KillMode=mixed: whatever the worker leaves behind is SIGKILLed
        hold.rollback()
        holder.close()
        if code is None:
            code = exit_code(w1, 60)
        kill(horse)
        stopped = job(db, job_id)
    finally:
        redis_server.start()
    assert code == 0, w1.log()[-3000:]
    assert stopped.status == "queued", (stopped.status, stopped.message)
    assert [a.status for a in attempts(db, job_id)] == ["preempted"], "the stop cost no attempt"
    kept = len(trial_numbers(db, job_id))
    workers("w2")
    final = wait_until(
        lambda: (j := job(db, job_id)).status in ("succeeded", "failed") and j, timeout=180, what="job to finish"
    )
    assert final.status == "succeeded", final.message
    assert [a.status for a in attempts(db, job_id)] == ["preempted", "succeeded"]
    assert final.resumed_from_iteration == kept


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_kill_9_of_a_job_process_inside_its_claim_leaves_no_lock(db, workers, clean):
    """Killed inside its claim transaction (job row locked, attempt insert waiting), a job
    process leaves no lock and no attempt behind: its server session ends with it, the job is
    sent again and succeeds with one attempt, and the worker runs on."""
    w1 = workers("w1")
    first = submit_smoke(db, clean).id
    wait_until(lambda: job(db, first).status == "succeeded", timeout=30, what="the worker's first job")
    second = submit_smoke(db, clean).id
    db.close()
    with table_locked(clean, "training_attempts"):
        wait_until(
            lambda: waiting_on_lock(clean, "INSERT INTO training_attempts"),
            timeout=30,
            what="claim waiting inside its transaction",
        )
        horse = child_pids(w1.pid)
        assert horse
        kill(horse)
    final = wait_until(lambda: (j := job(db, second)).status == "succeeded" and j, timeout=60, what="job to run again")
    assert final.attempts == 1, "the killed claim committed nothing"
    assert [a.status for a in attempts(db, second)] == ["succeeded"]
    assert w1.proc.poll() is None, w1.log()[-3000:]
