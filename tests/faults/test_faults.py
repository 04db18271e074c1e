"""Fault injection with real processes and real signals. Figures are printed, not asserted
(run with -s to see them): detection time after kill -9, cancel latency, work lost per SIGTERM."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from redis import Redis

from app.db import libpq_url
from app.status import AttemptStatus, JobStatus
from tests.faults.support import attempts, config_count, job, start, trial_numbers
from tests.support import child_pids, submit_smoke, wait_until

pytestmark = pytest.mark.faults


def wait_iteration(db, job_id, at_least: int, timeout: float = 60):
    return wait_until(
        lambda: (j := job(db, job_id)).status == JobStatus.RUNNING and (j.iteration or 0) >= at_least and j,
        timeout=timeout,
        what=f"job past iteration {at_least}",
    )


def wait_terminal(db, job_id, timeout: float = 120):
    return wait_until(
        lambda: (j := job(db, job_id)).status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED) and j,
        timeout=timeout,
        interval=0.1,
        what="job to finish",
    )


def test_sigterm_checkpoints_and_resumes_without_using_an_attempt(client, db, long_data, workers):
    w1 = workers("w1")
    job_id = start(client)
    before = wait_iteration(db, job_id, 20).iteration
    w1.signal(signal.SIGTERM)
    assert w1.wait(30) == 0, w1.log()
    stopped = job(db, job_id)
    assert stopped.status == JobStatus.QUEUED, stopped.message
    done_at_stop = len(trial_numbers(db, job_id))
    workers("w2")
    final = wait_terminal(db, job_id)
    assert final.status == JobStatus.SUCCEEDED, final.message
    history = attempts(db, job_id)
    assert [a.status for a in history] == [AttemptStatus.PREEMPTED, AttemptStatus.SUCCEEDED]
    assert final.resumed_from_iteration == done_at_stop >= before
    assert [a.start_iteration for a in history] == [0, done_at_stop]  # the job page's "from trial"
    assert trial_numbers(db, job_id) == list(range(300)), "trials continue, not restart"
    assert config_count(db, job_id) == 1
    print(f"\nSIGTERM: {before} trials seen before the signal, {done_at_stop} kept; work lost ≤ 1 iteration")


def test_kill_9_of_a_worker_is_recovered_by_the_reaper(client, db, long_data, workers):
    w1 = workers("w1")
    job_id = start(client)
    wait_iteration(db, job_id, 10)
    killed_at = time.monotonic()
    w1.kill_all()  # the worker and its job process, as `systemctl kill -s KILL` does
    workers("w2")
    wait_until(lambda: attempts(db, job_id)[0].status == AttemptStatus.LOST, timeout=60, what="attempt declared lost")
    detected = time.monotonic() - killed_at
    final = wait_terminal(db, job_id)
    assert final.status == JobStatus.SUCCEEDED
    history = attempts(db, job_id)
    assert [a.status for a in history] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert history[0].error_type == "WorkerLost" and "no heartbeat" in history[0].error_message
    assert final.resumed_from_iteration and final.resumed_from_iteration >= 10
    assert trial_numbers(db, job_id) == list(range(300)) and config_count(db, job_id) == 1
    print(f"\nkill -9: attempt declared lost {detected:.1f}s after the kill (stale bound 6s in tests, 30s default)")


def test_orphaned_job_process_notices_its_worker_died(client, db, long_data, workers):
    w1 = workers("w1")
    job_id = start(client)
    wait_iteration(db, job_id, 10)
    horse = child_pids(w1.pid)
    assert horse, "the job runs in a forked process"
    w1.signal(signal.SIGKILL)  # only the worker: its job process lives on
    wait_until(
        lambda: attempts(db, job_id)[0].status == AttemptStatus.LOST, timeout=30, what="orphan to give up its attempt"
    )
    workers("w2")
    final = wait_terminal(db, job_id)
    assert final.status == JobStatus.SUCCEEDED and config_count(db, job_id) == 1
    assert trial_numbers(db, job_id) == list(range(300))


def test_cancel_of_a_running_job(client, db, long_data, workers):
    workers("w1")
    job_id = start(client, n_iterations=1500)
    wait_iteration(db, job_id, 10)
    asked = time.monotonic()
    resp = client.delete(f"/api/v2/training/jobs/{job_id}")
    assert resp.status_code == 202 and resp.json()["cancel_requested"] is True
    final = wait_terminal(db, job_id, timeout=30)
    latency = time.monotonic() - asked
    assert final.status == JobStatus.CANCELED and final.error_type is None
    assert [a.status for a in attempts(db, job_id)] == [AttemptStatus.CANCELED]
    assert config_count(db, job_id) == 0
    assert 10 <= len(trial_numbers(db, job_id)) < 1500, "partial work is recorded"
    assert client.delete(f"/api/v2/training/jobs/{job_id}").status_code == 409
    print(f"\ncancel of a running job: canceled {latency:.2f}s after the request")


def test_cancel_kills_a_job_that_ignores_it(client, db, workers, clean):
    """The smoke job checks only between steps; with huge steps it ignores the request, and
    the worker kills it after the grace period (4 s in tests)."""
    workers("w1")
    job_id = submit_smoke(db, clean, hashes_per_step=30_000_000).id
    wait_until(lambda: job(db, job_id).status == JobStatus.RUNNING, timeout=20, what="smoke job running")
    client.delete(f"/api/v2/training/jobs/{job_id}")
    final = wait_terminal(db, job_id, timeout=30)
    assert final.status == JobStatus.CANCELED and "killed" in final.message
    assert [a.status for a in attempts(db, job_id)] == [AttemptStatus.CANCELED]


def test_redis_flushall_loses_nothing(client, db, long_data, workers, clean):
    ids = [start(client, n_iterations=20, seed=s) for s in range(4)]
    Redis.from_url(clean.redis_url).flushall()
    workers("w1")
    for job_id in ids:
        assert wait_terminal(db, job_id).status == JobStatus.SUCCEEDED
        assert config_count(db, job_id) == 1


def test_redis_down_at_submit_is_accepted_then_enqueued(client, db, long_data, workers, redis_server):
    redis_server.stop()
    try:
        resp = client.post(
            "/api/v2/training/start",
            json={"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1m", "n_iterations": 15, "seed": 1},
        )
        assert resp.status_code == 202 and resp.json()["status"] == JobStatus.QUEUED
    finally:
        redis_server.start()
    workers("w1")
    assert wait_terminal(db, resp.json()["job_id"]).status == JobStatus.SUCCEEDED


def test_redis_killed_and_restarted_from_aof_mid_job(client, db, long_data, workers, redis_server):
    workers("w1")
    running = start(client, n_iterations=1000)
    waiting = start(client, n_iterations=20, seed=9)
    wait_iteration(db, running, 10)
    time.sleep(1.1)  # appendfsync everysec: let one fsync happen, as in production
    redis_server.stop(signal.SIGKILL)
    time.sleep(3)  # Redis stays down for a few seconds, as a restart or a crash loop causes
    redis_server.start()
    for job_id in (running, waiting):
        final = wait_terminal(db, job_id)
        assert final.status == JobStatus.SUCCEEDED, final.message
        assert config_count(db, job_id) == 1
    assert [a.status for a in attempts(db, running)] == [AttemptStatus.SUCCEEDED], "the running job rode out the outage"


def test_postgres_restart_mid_job(client, db, long_data, workers, postgres):
    workers("w1")
    job_id = start(client, n_iterations=1000)
    wait_iteration(db, job_id, 10)
    db.close()
    postgres.stop()
    time.sleep(2)  # an outage of a couple of seconds, as a restart causes
    postgres.start()
    final = wait_terminal(db, job_id, timeout=120)
    assert final.status == JobStatus.SUCCEEDED, final.message
    assert config_count(db, job_id) == 1
    assert trial_numbers(db, job_id) == list(range(1000))
    assert [a.status for a in attempts(db, job_id)] == [AttemptStatus.SUCCEEDED], "the job waited the outage out"


def test_postgres_down_api_answers_503(client, db, postgres):
    progress = f"/api/v2/training/jobs/{uuid.uuid4()}/progress"
    assert client.get(progress).status_code == 404, "the read pool holds a connection from now on"
    db.close()
    postgres.stop()
    try:
        resp = client.post(
            "/api/v2/training/start",
            json={"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1m", "n_iterations": 5, "seed": 1},
        )
        assert resp.status_code == 503 and "PostgreSQL" in resp.json()["detail"]
        assert client.get("/readyz").status_code == 503
        resp = client.get(progress)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "5", resp.text
    finally:
        postgres.start()
    assert client.get("/api/v2/training/jobs").json()["total"] == 0, "nothing half-written"
    assert client.get(progress).status_code == 404, "the progress read is back without a failed request"


def test_second_sigterm_stops_at_once_and_the_job_is_recovered(client, db, long_data, workers):
    """The second signal is a cold shutdown: the job process dies with the worker, its
    attempt goes stale and the reaper re-queues it."""
    w1 = workers("w1")
    job_id = start(client, n_iterations=400)
    wait_iteration(db, job_id, 10)
    w1.signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a repeat signal within one second (duplicate delivery guard)
    w1.signal(signal.SIGTERM)
    w1.wait(15)
    status_after_stop = job(db, job_id).status
    workers("w2")
    final = wait_terminal(db, job_id, timeout=180)
    assert final.status == JobStatus.SUCCEEDED
    statuses = [a.status for a in attempts(db, job_id)]
    # Either the checkpoint won the race (preempted) or the cold stop did (lost); never both, never failed.
    assert statuses[-1] == AttemptStatus.SUCCEEDED and statuses[0] in (AttemptStatus.PREEMPTED, AttemptStatus.LOST), (
        statuses
    )
    assert status_after_stop in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert config_count(db, job_id) == 1


def test_reaper_keeps_rq_registries_true(client, db, long_data, workers, clean):
    """After a kill -9 the dead dispatch leaves RQ's started registry, so `rq info` is honest."""
    from rq.registry import StartedJobRegistry
    from rq.serializers import JSONSerializer

    from app.queue import get_queue

    w1 = workers("w1")
    job_id = start(client)
    wait_iteration(db, job_id, 5)
    dead_dispatch = job(db, job_id).rq_job_id
    w1.kill_all()
    workers("w2")  # hosts the reaper
    wait_until(lambda: attempts(db, job_id)[0].status == AttemptStatus.LOST, timeout=60, what="attempt declared lost")
    connection = Redis.from_url(clean.redis_url)
    registry = StartedJobRegistry(queue=get_queue(connection, "normal"), serializer=JSONSerializer)
    assert not [i for i in registry.get_job_ids(cleanup=False) if i.startswith(dead_dispatch)]


def test_api_restart_mid_job(db, long_data, workers, clean, tmp_path):
    """The API holds no job state: restarting it mid-job changes nothing for the job."""
    import subprocess
    import sys

    import httpx

    from app.dev.servers import free_port, wait_for_port
    from tests.support import ROOT, TOKEN, process_env

    port = free_port()
    env = {**process_env(clean), "API_PORT": str(port)}

    def start_api():
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.api"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(port, 30, proc)
        return proc

    api = start_api()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        workers("w1")
        job_id = http.post(
            "/api/v2/training/start",
            json={"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1m", "n_iterations": 300, "seed": 3},
        ).json()["job_id"]
        wait_iteration(db, job_id, 10)
        api.terminate()
        api.wait(15)
        api = start_api()
        final = wait_until(
            lambda: (
                (b := http.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"]
                in (JobStatus.SUCCEEDED, JobStatus.FAILED)
                and b
            ),
            timeout=120,
            what="job to finish",
        )
        assert final["status"] == AttemptStatus.SUCCEEDED and final["attempts"] == 1
    finally:
        api.terminate()
        api.wait(15)
        http.close()


def test_the_api_reaps_when_no_worker_is_left(client, db, long_data, workers, clean):
    """With every worker dead, the API's maintenance loop still declares the attempt lost and
    re-queues the job; a worker started later runs it."""
    import subprocess
    import sys

    from app.dev.servers import free_port, wait_for_port
    from tests.support import ROOT, process_env

    w1 = workers("w1")
    job_id = start(client)
    wait_iteration(db, job_id, 5)
    w1.kill_all()
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "app.api"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**process_env(clean), "API_PORT": str(port)},
    )
    try:
        wait_for_port(port, 30, api)
        wait_until(lambda: job(db, job_id).status == JobStatus.QUEUED, timeout=60, what="API to re-queue the job")
        assert attempts(db, job_id)[0].status == AttemptStatus.LOST
    finally:
        api.terminate()
        api.wait(15)
    workers("w2")
    assert wait_terminal(db, job_id).status == JobStatus.SUCCEEDED


def test_stalled_attempts_are_retried_then_failed(db, workers, clean):
    """No progress for longer than the kind's stall timeout stops the attempt; the job is
    retried with backoff and fails with a clear error once its attempts are used up."""
    workers("w1", env_overrides={"SMOKE_STALL_TIMEOUT_S": "2", "SMOKE_MAX_ATTEMPTS": "2"})
    job_id = submit_smoke(db, clean.model_copy(update={"smoke_max_attempts": 2}), hashes_per_step=50_000_000).id
    final = wait_terminal(db, job_id, timeout=60)
    assert final.status == JobStatus.FAILED and final.error_type == "Stalled", (final.error_type, final.message)
    history = attempts(db, job_id)
    assert [a.status for a in history] == [AttemptStatus.FAILED, AttemptStatus.FAILED]
    assert all(a.error_type == "Stalled" for a in history)


def test_a_timeout_that_cuts_a_statement_in_half_still_ends_the_attempt(db, workers, clean):
    """The hard timeout arrives as an exception raised wherever the job is. Here the job is
    inside a statement (its progress write, waiting for a row lock this test holds): the cut
    connection's rollback then fails with an OperationalError, which must not stand in for the
    interruption (it used to: retried as an outage, the job ran on unwatched and without a
    heartbeat). The attempt ends AttemptTimeout, its heartbeat beating while it waits to record
    that."""
    w1 = workers("w1", env_overrides={"SMOKE_TIMEOUT_S": "10", "SMOKE_MAX_ATTEMPTS": "1"})
    job_id = submit_smoke(db, clean.model_copy(update={"smoke_max_attempts": 1}), hashes_per_step=1_500_000).id
    wait_until(lambda: job(db, job_id).status == JobStatus.RUNNING, timeout=30, what="job running")
    with psycopg.connect(libpq_url(clean.database_url)) as holder:
        holder.execute("SELECT 1 FROM training_jobs WHERE id = %s FOR UPDATE", (job_id,))
        with psycopg.connect(libpq_url(clean.database_url), autocommit=True) as watcher:
            wait_until(
                lambda: (
                    watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
                        ("%training_jobs%",),
                    ).fetchone()[0]
                    == 1
                ),
                timeout=30,
                what="the job's progress write waiting for the row lock",
            )
        wait_until(lambda: "hard timeout of 10s: stopping this attempt" in w1.log(), timeout=30, what="the timeout")
        seen = datetime.now(UTC)
        wait_until(  # the heartbeat goes on while the attempt waits to record its end
            lambda: attempts(db, job_id)[0].heartbeat_at > seen + timedelta(seconds=2),
            timeout=15,
            what="a heartbeat after the timeout",
        )
    final = wait_terminal(db, job_id, timeout=60)
    assert final.status == JobStatus.FAILED and final.error_type == "AttemptTimeout", (final.error_type, final.message)
    assert [a.error_type for a in attempts(db, job_id)] == ["AttemptTimeout"]
    assert (final.iteration or 0) < 4, "the job stopped at its timeout, not after its last step"


def test_hard_timeout_stops_the_attempt_and_retries_then_fails(db, workers, clean):
    """Progress keeps coming, so the attempt is not stalled, but it runs past the kind's hard
    timeout (10 s here): it is stopped, retried, and failed once attempts are used up."""
    workers("w1", env_overrides={"SMOKE_TIMEOUT_S": "10", "SMOKE_MAX_ATTEMPTS": "2"})
    job_id = submit_smoke(db, clean.model_copy(update={"smoke_max_attempts": 2}), hashes_per_step=12_000_000).id
    final = wait_terminal(db, job_id, timeout=90)
    assert final.status == JobStatus.FAILED and final.error_type == "AttemptTimeout", (final.error_type, final.message)
    assert [a.error_type for a in attempts(db, job_id)] == ["AttemptTimeout", "AttemptTimeout"]
