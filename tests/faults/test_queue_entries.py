"""A queue entry is data, never code (DESIGN invariant 14). Whoever holds a worker host's Redis
credentials can write queue entries; here they do, as that host's real ACL user, against the
primary's real worker: an entry naming another function, entries with the right function but
callbacks, an entry RQ cannot even read, and RQ's shutdown command. The worker runs none of it,
records each refusal in RQ's failed registry, logs it, and goes on running real jobs."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError
from rq import Callback, Queue
from rq.command import send_shutdown_command
from rq.job import Job as RQJob
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from app.settings import Settings
from app.status import JobStatus
from tests.redis_acl import HOST_USER, AclRedis, start_acl_redis
from tests.support import WorkerProcess, process_env, start_worker, submit_smoke, wait_until

pytestmark = pytest.mark.faults

WORKER = "trad-worker-1@primary"


@pytest.fixture
def acl(tmp_path: Path) -> Iterator[AclRedis]:
    server = start_acl_redis(tmp_path / "redis-acl")
    yield server
    server.stop()


@pytest.fixture
def primary(acl: AclRedis, clean: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, Settings]]:
    """The primary's worker, as user `trad`, registered and waiting for jobs."""
    settings = clean.model_copy(update={"redis_url": acl.url("trad")})
    worker = start_worker(process_env(settings), WORKER, tmp_path)
    admin = acl.client("default")
    try:
        wait_until(lambda: admin.exists(f"rq:worker:{WORKER}"), timeout=30, what="the worker's registration")
        yield worker, settings
    finally:
        worker.kill_all()


def training_queue(connection: Redis) -> Queue:
    return Queue("training", connection=connection, serializer=JSONSerializer)


def settled(admin: Redis, rq_job_id: str) -> str | None:
    """The RQ status of an entry once a worker has dealt with it (finished or failed)."""
    status = RQJob.fetch(rq_job_id, connection=admin, serializer=JSONSerializer).get_status()
    return status if status in ("finished", "failed", "stopped") else None


def refusal(admin: Redis, rq_job_id: str) -> str:
    assert rq_job_id in FailedJobRegistry("training", connection=admin, serializer=JSONSerializer).get_job_ids()
    result = RQJob.fetch(rq_job_id, connection=admin, serializer=JSONSerializer).latest_result()
    return result.exc_string


def error_lines(worker: WorkerProcess, *needles: str) -> list[dict]:
    lines = []
    for raw in worker.log().splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if line.get("level") == "ERROR" and all(n in raw for n in needles):
                lines.append(line)
    return lines


def still_runs_jobs(worker: WorkerProcess, settings: Settings, db) -> None:
    """The worker is alive and runs a real job to the end."""
    job = submit_smoke(db, settings)

    def done() -> bool:
        db.expire_all()
        return worker.proc.poll() is not None or db.get(type(job), job.id).status == JobStatus.SUCCEEDED

    wait_until(done, timeout=60, what="the real job after the refused entries")
    assert worker.proc.poll() is None, f"the worker exited with {worker.proc.returncode}:\n{worker.log()[-3000:]}"
    assert db.get(type(job), job.id).status == JobStatus.SUCCEEDED


def test_an_entry_naming_another_function_is_refused_and_the_worker_goes_on(acl, primary, db, tmp_path):
    worker, settings = primary
    admin, host = acl.client("default"), acl.client(HOST_USER)
    target = tmp_path / "made-by-a-queue-entry"

    entry = training_queue(host).enqueue("os.makedirs", str(target))

    wait_until(lambda: settled(admin, entry.id), timeout=30, what="the worker to take the entry")
    assert not target.exists(), "the worker ran os.makedirs from a queue entry"
    reason = refusal(admin, entry.id)
    assert "refused" in reason and "os.makedirs" in reason, reason
    [line] = error_lines(worker, entry.id, "os.makedirs")
    assert line["func_name"] == "os.makedirs" and line["rq_job_id"] == entry.id, line
    still_runs_jobs(worker, settings, db)


def test_an_entry_with_the_entrypoint_but_callbacks_is_refused(acl, primary, db, tmp_path):
    """The entrypoint itself, for a job id PostgreSQL does not know (so it returns at once),
    with callbacks naming another function: RQ would import and call the success one after the
    job (and the stopped one in the worker itself, had the job been stopped)."""
    worker, settings = primary
    admin, host = acl.client("default"), acl.client(HOST_USER)
    canary = tmp_path / "made-by-a-callback"
    callbacks = {name: Callback("tests.faults.canary.ran") for name in ("on_success", "on_failure", "on_stopped")}

    entry = training_queue(host).enqueue_call(
        "app.jobs.run", args=[str(uuid.uuid4())], meta={"canary": str(canary)}, **callbacks
    )

    wait_until(lambda: settled(admin, entry.id), timeout=30, what="the worker to take the entry")
    assert not canary.exists(), "the worker ran a callback of a queue entry"
    reason = refusal(admin, entry.id)
    assert "refused" in reason and "callback" in reason, reason
    still_runs_jobs(worker, settings, db)


def test_an_entry_rq_cannot_read_is_dropped_and_the_worker_goes_on(acl, primary, db):
    """A job hash whose fields RQ fails to parse (here its status) made RQ's work loop quit:
    under systemd a restart, and a handful of such entries a unit past its start limit."""
    worker, settings = primary
    host = acl.client(HOST_USER)
    data = json.dumps(["app.jobs.run", None, [str(uuid.uuid4())], {}])
    host.hset("rq:job:unreadable", mapping={"data": data, "status": "no-such-status", "origin": "training"})
    host.rpush("rq:queue:training", "unreadable")

    wait_until(lambda: not host.llen("rq:queue:training"), timeout=30, what="the worker to take the entry")
    wait_until(
        lambda: worker.proc.poll() is not None or error_lines(worker, "unreadable"),
        timeout=30,
        what="the refusal in the log",
    )
    assert worker.proc.poll() is None, f"the worker exited with {worker.proc.returncode}:\n{worker.log()[-3000:]}"
    still_runs_jobs(worker, settings, db)


def test_rqs_shutdown_command_does_not_stop_the_worker(acl, primary, db):
    """RQ's `shutdown` command is a Redis publish anyone with the credentials can send; the
    worker took it as an operator's stop and exited 0, which systemd's Restart=on-failure leaves
    dead. The worker takes no commands over Redis: the host's user may not even send one, and
    one from the administrator reaches nobody."""
    worker, settings = primary
    with contextlib.suppress(NoPermissionError):
        send_shutdown_command(acl.client(HOST_USER), WORKER)
    send_shutdown_command(acl.client("default"), WORKER)

    still_runs_jobs(worker, settings, db)
    assert not acl.client("default").pubsub_numsub(f"rq:pubsub:{WORKER}")[0][1]


def test_an_abandoned_entry_with_a_failure_callback_runs_nothing_in_the_workers_cleanup(acl, clean, db, tmp_path):
    """RQ's registry cleanup (in the worker process, at start and then periodically) calls the
    failure callback of any started entry whose execution expired: plant one, then start the
    worker."""
    admin, host = acl.client("default"), acl.client(HOST_USER)
    canary = tmp_path / "made-by-a-cleanup"
    planted = training_queue(host).enqueue_call(
        "app.jobs.run",
        args=[str(uuid.uuid4())],
        meta={"canary": str(canary)},
        on_failure=Callback("tests.faults.canary.ran"),
    )
    host.lrem("rq:queue:training", 0, planted.id)
    host.hset(planted.key, "status", "started")
    host.zadd("rq:wip:training", {f"{planted.id}:0123456789abcdef": 1})  # expired long ago

    settings = clean.model_copy(update={"redis_url": acl.url("trad")})
    worker = start_worker(process_env(settings), WORKER, tmp_path)
    try:
        wait_until(
            lambda: worker.proc.poll() is not None or not admin.zcard("rq:wip:training"),
            timeout=30,
            what="RQ's cleanup of the started registry",
        )
        assert not canary.exists(), "the worker ran the failure callback of an abandoned entry"
        still_runs_jobs(worker, settings, db)
    finally:
        worker.kill_all()
