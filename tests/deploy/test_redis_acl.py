"""The project's Redis configuration (ops/redis/trad.conf) with the ACL rules install_redis.sh
writes: a real RQ worker runs jobs as user `trad`, and that user cannot wipe or reconfigure Redis."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from app.dev.servers import RedisServer
from app.settings import Settings
from app.status import JobStatus
from tests.support import ROOT, process_env, start_worker, submit_smoke, wait_until

APP_PASSWORD, ADMIN_PASSWORD = "app-secret-0123", "admin-secret-4567"
HOST_USER, HOST_PASSWORD = "trad_host_node2", "host-secret-89ab"  # a worker host's user, as add-user writes it


def app_rules() -> str:
    script = (ROOT / "ops/scripts/install_redis.sh").read_text()
    return re.search(r"^APP_RULES='([^']+)'", script, re.M).group(1)


def project_config(port: int) -> str:
    lines = [
        line
        for line in (ROOT / "ops/redis/trad.conf").read_text().splitlines()
        if not line.startswith(("include ", "port "))
    ]
    lines += [
        f"port {port}",
        f"user default on >{ADMIN_PASSWORD} ~* &* +@all",
        f"user trad on >{APP_PASSWORD} {app_rules()}",
        f"user {HOST_USER} on #{hashlib.sha256(HOST_PASSWORD.encode()).hexdigest()} {app_rules()}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def acl_redis(tmp_path: Path):
    server = RedisServer(tmp_path / "redis-acl")
    server.config = project_config(server.port)
    server.start()
    yield server
    server.stop()


def test_config_values(acl_redis):
    admin = Redis(port=acl_redis.port, username="default", password=ADMIN_PASSWORD)
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    assert admin.config_get("appendfsync")["appendfsync"] == "everysec"
    assert admin.config_get("protected-mode")["protected-mode"] == "yes"
    with pytest.raises(Exception, match=r"NOAUTH|authenticated"):
        Redis(port=acl_redis.port).ping()


def test_worker_runs_jobs_as_the_app_user_which_cannot_wipe_redis(acl_redis, clean, db, tmp_path):
    url = f"redis://trad:{APP_PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    settings: Settings = clean.model_copy(update={"redis_url": url})
    env = {**process_env(settings), "REDIS_URL": url}
    worker = start_worker(env, "acl-worker", tmp_path)
    try:
        job = submit_smoke(db, settings)
        wait_until(
            lambda: (db.expire_all(), db.get(type(job), job.id).status)[1] == JobStatus.SUCCEEDED,
            timeout=30,
            what="smoke job under the ACL user",
        )
    finally:
        worker.kill_all()
    app = Redis.from_url(url)
    for forbidden in (app.flushall, app.flushdb, lambda: app.config_get("*"), lambda: app.keys("*")):
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
