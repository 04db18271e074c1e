"""The project's Redis configuration (ops/redis/trad.conf) with the ACL rules install_redis.sh
writes: a real RQ worker runs jobs as user `trad` and as a worker host's user, and neither user
can wipe or reconfigure Redis, use a pub/sub channel or reach a key outside RQ's."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from app.settings import Settings
from app.status import JobStatus
from tests.redis_acl import (
    ADMIN_PASSWORD,
    APP_PASSWORD,
    HOST_PASSWORD,
    HOST_USER,
    INSTALL_REDIS,
    script_rules,
    start_acl_redis,
)
from tests.support import TOKEN, api_process, process_env, start_worker, submit_smoke, wait_until


@pytest.fixture
def acl_redis(tmp_path: Path):
    acl = start_acl_redis(tmp_path / "redis-acl")
    yield acl
    acl.stop()


def test_config_values(acl_redis):
    admin = Redis(port=acl_redis.port, username="default", password=ADMIN_PASSWORD)
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    assert admin.config_get("appendfsync")["appendfsync"] == "everysec"
    assert admin.config_get("protected-mode")["protected-mode"] == "yes"
    with pytest.raises(Exception, match=r"NOAUTH|authenticated"):
        Redis(port=acl_redis.port).ping()


@pytest.mark.parametrize("user", ["trad", HOST_USER])
def test_a_worker_runs_jobs_as_each_user_which_cannot_wipe_redis(acl_redis, user, clean, db, tmp_path):
    """The primary's workers run as `trad`, a worker host's as its own user: each set of rules
    is enough for a real worker to take a job, run it and record it (with the maintenance pass
    running in the worker), and neither can wipe or reconfigure Redis."""
    url = acl_redis.url(user)
    # The job is sent as `trad`, as the API would; the worker takes it as `user`.
    settings: Settings = clean.model_copy(update={"redis_url": acl_redis.url("trad")})
    env = {**process_env(settings), "REDIS_URL": url}
    worker = start_worker(env, "acl-worker", tmp_path)
    try:
        job = submit_smoke(db, settings)
        wait_until(
            lambda: (db.expire_all(), db.get(type(job), job.id).status)[1] == JobStatus.SUCCEEDED,
            timeout=30,
            what=f"smoke job under the ACL user {user}",
        )
        assert worker.proc.poll() is None, worker.log()[-3000:]
        assert "NOPERM" not in worker.log(), worker.log()[-3000:]
    finally:
        worker.kill_all()
    client = Redis.from_url(url)
    for forbidden in (client.flushall, client.flushdb, lambda: client.config_get("*"), lambda: client.keys("*")):
        with pytest.raises(NoPermissionError):
            forbidden()


@pytest.mark.parametrize("user", ["trad", HOST_USER])
def test_no_user_but_the_administrator_has_a_command_channel_or_keys_outside_rq(acl_redis, user):
    """trad keeps nothing in Redis but RQ's keys, and its workers take no commands over Redis:
    neither user may publish to or subscribe to RQ's command channels, or touch another key."""
    client = acl_redis.client(user)
    assert client.set("rq:probe", "x")
    with pytest.raises(NoPermissionError):
        client.publish("rq:pubsub:trad-worker-1@primary", '{"command": "shutdown"}')
    pubsub = client.pubsub()
    with pytest.raises(NoPermissionError):
        pubsub.subscribe("rq:pubsub:trad-worker-1@primary")
        pubsub.get_message(timeout=1)
    for forbidden in (
        lambda: client.set("other", "x"),
        lambda: client.get("other"),
        lambda: client.execute_command("FUNCTION", "LIST"),
    ):
        with pytest.raises(NoPermissionError):
            forbidden()


def test_a_worker_hosts_user_has_a_hashed_password_and_no_dangerous_commands(acl_redis):
    host = Redis(port=acl_redis.port, username=HOST_USER, password=HOST_PASSWORD)
    assert host.ping() and host.rpush("rq:queue:probe", "x") == 1
    for forbidden in (host.flushall, lambda: host.config_get("*"), lambda: host.acl_deluser("trad")):
        with pytest.raises(NoPermissionError):
            forbidden()
    with pytest.raises(Exception, match="invalid username-password pair"):
        Redis(port=acl_redis.port, username=HOST_USER, password="wrong").ping()
    admin = Redis(port=acl_redis.port, username="default", password=ADMIN_PASSWORD)
    assert admin.acl_deluser(HOST_USER) == 1  # revoked alone: the application user is untouched
    with pytest.raises(Exception, match="invalid username-password pair"):
        Redis(port=acl_redis.port, username=HOST_USER, password=HOST_PASSWORD).ping()
    assert Redis(port=acl_redis.port, username="trad", password=APP_PASSWORD).ping()


def test_a_deploy_gives_users_of_earlier_worker_hosts_todays_rules(tmp_path):
    """A worker host added by an earlier release keeps its user (and password) across the
    primary's next deploy, which rewrites the user's rules to WORKER_HOST_RULES."""
    workers_conf = tmp_path / "trad-workers.conf"
    digest = hashlib.sha256(HOST_PASSWORD.encode()).hexdigest()
    old = f"user {HOST_USER} on #{digest} ~* &* +@all -@dangerous +info +client|setname +client|info"
    workers_conf.write_text(f"# Worker hosts' users\n{old}\n")
    # The script as a file beside the lib.sh it sources, its `main` replaced by the one step.
    script = tmp_path / "install_redis.sh"
    body = INSTALL_REDIS.read_text().replace('\nmain "$@"\n', '\nWORKERS_CONF="$1"; refresh_worker_users\n')
    script.write_text(body)
    shutil.copy(INSTALL_REDIS.parent / "lib.sh", tmp_path / "lib.sh")
    subprocess.run(["bash", str(script), str(workers_conf)], check=True, capture_output=True)
    lines = workers_conf.read_text().splitlines()
    assert lines == ["# Worker hosts' users", f"user {HOST_USER} on #{digest} {script_rules('WORKER_HOST_RULES')}"]


def test_the_api_works_as_the_app_user(acl_redis, clean, candles_1h, tmp_path):
    """Everything the API does with Redis (send, read depths and workers, withdraw a queued job
    on cancel, its maintenance pass) stays within APP_RULES."""
    settings: Settings = clean.model_copy(update={"redis_url": acl_redis.url("trad")})
    log = tmp_path / "api.log"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        api_process(settings, log, MAINTENANCE_IN_API="true") as url,
        httpx.Client(base_url=url, headers=headers, timeout=30) as http,
    ):
        assert http.get("/readyz").status_code == 200
        body = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 5}
        started = http.post("/api/v2/training/start", json=body)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        wait_until(lambda: http.get("/api/v2/training/queue").json()["depth"]["normal"] == 1, what="the dispatch")
        assert http.get("/metrics").status_code == 200
        assert http.delete(f"/api/v2/training/jobs/{job_id}").status_code in (200, 202)
        wait_until(lambda: http.get("/api/v2/training/queue").json()["depth"]["normal"] == 0, what="withdrawal")
    assert "NOPERM" not in log.read_text(), log.read_text()[-3000:]
