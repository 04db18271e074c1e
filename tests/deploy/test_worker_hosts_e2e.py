"""Two real systemd hosts on a private network this test makes (tests/deploy/network.py): the primary
is deployed with remote listening, a worker host is added with one command, jobs run on both, the
primary's Redis and PostgreSQL refuse plain text and strangers from the worker's network, both hosts
get the same strategy packages (STRATEGY_PACKAGES), a partitioned worker host is fenced, a worker
host powered off mid-job loses nothing, and removing a host re-queues its job and revokes its
access. The tests run in order and share the two hosts. The measured times are printed (run with -s
to see them)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from app.status import AttemptStatus, JobStatus
from tests.deploy.api import api, progress, secret, start_job, wait_status
from tests.deploy.conftest import HOST_ADDRESSES, HOST_NAMES
from tests.deploy.runbook import runnable
from tests.deploy.strategy_package import release_entry_points
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.e2e
PRIMARY, WORKER = HOST_NAMES["primary"], HOST_NAMES["worker"]
LISTEN = HOST_ADDRESSES["primary"]
REDIS_TLS_PORT = 6380
WORKER_ROLE = "trad_host_trad_node2"  # the worker host's PostgreSQL role and Redis user
STALE_S = 30  # HEARTBEAT_STALE_S as deployed (the default)


def attempts(primary, job_id: str) -> list[dict]:
    return api(primary, "GET", f"/api/v2/training/jobs/{job_id}")["attempt_history"]


def running_on(primary, job_id: str, host: str, at_least: int = 0, timeout: float = 240) -> None:
    def there() -> bool:
        p = progress(primary, job_id)
        if p["status"] != JobStatus.RUNNING or (p["iteration"] or 0) < at_least:
            return False
        last = attempts(primary, job_id)[-1]
        return last["status"] == AttemptStatus.RUNNING and last["worker_name"].endswith(f"@{host}")

    wait_until(there, timeout=timeout, interval=0.5, what=f"job {job_id} running on {host}")


def workers_on(primary, host: str) -> int:
    listed = api(primary, "GET", "/api/v2/training/queue")["worker_list"]
    return sum(1 for w in listed if w["host"] == host)


def primary_workers(primary, start: bool) -> None:
    """Scale the primary's own workers to 0 (stop) or back (start), so a job lands where the test says."""
    primary.ssh(f"systemctl {'start' if start else 'stop'} trad-worker@1 trad-worker@2")
    if start:
        wait_until(lambda: workers_on(primary, PRIMARY) == 2, timeout=120, what="the primary's workers")


def psql_on_primary(primary, sql: str) -> str:
    return primary.ssh(f"runuser -u postgres -- psql -d trad -tAc {sql!r}", check=False).stdout.strip()


def pg_port(primary) -> str:
    return primary.ssh("pg_lsclusters --no-header | awk '{print $3; exit}'").stdout.strip()


def print_connections(primary) -> None:
    """PostgreSQL sessions and Redis clients per user on the primary: the figures docs/scaling.md
    sizes connection limits with (2 idle workers on the primary, 1 busy and 1 idle on the worker host)."""
    sessions = psql_on_primary(
        primary, "SELECT usename, count(*) FROM pg_stat_activity WHERE usename LIKE 'trad%' GROUP BY 1 ORDER BY 1"
    )
    clients = primary.ssh(
        "REDISCLI_AUTH=\"$(sed -n 's/^user default on >\\([^ ]*\\).*/\\1/p' /etc/redis/trad-users.conf)\" "
        "redis-cli -s /run/redis/redis-server.sock --user default client list | grep -o ' user=[^ ]*' | sort | uniq -c"
    ).stdout
    print(f"\nFIGURE PostgreSQL sessions by role:\n{sessions}\nFIGURE Redis clients by user:\n{clients}")


@pytest.fixture(scope="module")
def strategy_packages() -> str:
    """STRATEGY_PACKAGES for both hosts: the example strategy package's directory."""
    return str(ROOT / "examples/ema_volatility")


BUILT_IN = ("bollinger_breakout", "liquidity_sweep", "rsi_reversion", "sma_crossover")
EXAMPLE = ("ema_volatility", "trad-ema-volatility", "1.0.0")  # strategy, package, version


def trad_distribution(host) -> str:
    """trad's own version as an installed distribution of the live release's virtualenv."""
    script = "import importlib.metadata as m; print(m.version('trad'))"
    return host.ssh(f'cd / && /srv/trad/current/venv/bin/python -c "{script}"').stdout.strip()


def test_primary_deploy_with_remote_listening(two_hosts, strategy_packages):
    primary = two_hosts.primary
    result, _ = two_hosts.deploy(
        "primary deploy", SERVER=PRIMARY, WORKERS="2", LISTEN_ADDRESS=LISTEN, STRATEGY_PACKAGES=strategy_packages
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "strategy packages installed: trad_ema_volatility-1.0.0-py3-none-any.whl" in result.stdout
    # trad itself and the example are installed distributions: their entry points are found
    # (and load) from outside the release's directory.
    assert trad_distribution(primary) == "0.1.0"
    assert sorted(e.split("=")[0] for e in release_entry_points(primary)) == sorted([*BUILT_IN, EXAMPLE[0]])
    listed = primary.ssh(runnable()["strategies"]).stdout.splitlines()  # the runbook's block, as written
    assert {tuple(line.split("\t")[:3]) for line in listed[1:]} >= {EXAMPLE, ("sma_crossover", "trad", "0.1.0")}
    assert "health check passed" in result.stdout
    assert "private CA /etc/trad/ca: created" in result.stderr + result.stdout
    listeners = {line.split()[3] for line in primary.ssh("ss -ltnH").stdout.splitlines() if line.strip()}
    port = pg_port(primary)
    assert {f"{LISTEN}:{REDIS_TLS_PORT}", f"{LISTEN}:{port}"} <= listeners, listeners
    assert not any(a.endswith(":6379") for a in listeners), f"a plain-text Redis port is open: {listeners}"
    beyond_loopback = {a for a in listeners if not a.startswith(("127.0.0.1:", "[::1]:"))}
    expected = {f"{LISTEN}:{REDIS_TLS_PORT}", f"{LISTEN}:{port}"} | {
        f"{a}:{p}" for a in ("0.0.0.0", "[::]") for p in (22, 443)
    }
    assert beyond_loopback <= expected, listeners  # TLS Redis and PostgreSQL, nginx, sshd: nothing in plain text
    modes = primary.ssh("stat -c '%n %a %U' /etc/trad/ca /etc/trad/ca/ca.key /etc/trad/ca/server.key").stdout
    assert modes.split("\n")[:3] == [
        "/etc/trad/ca 700 root",
        "/etc/trad/ca/ca.key 600 root",
        "/etc/trad/ca/server.key 600 root",
    ]
    assert secret(primary, "redis_url").startswith("unix://trad:")  # local units use the socket
    primary.ssh("trad candles synth --symbol BTCUSDT --timeframe 1m --bars 150000")


def test_adding_a_worker_host_is_one_command(two_hosts, strategy_packages):
    primary, worker = two_hosts.primary, two_hosts.worker
    # A bare worker VM runs none of the primary's services (the test image has them installed).
    worker.ssh("systemctl disable --now --quiet redis-server postgresql nginx")
    packages = {"STRATEGY_PACKAGES": strategy_packages}
    result, took = two_hosts.deploy(
        "add a worker host", ROLE="worker", PRIMARY=PRIMARY, SERVER=WORKER, WORKERS="2", **packages
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The same release as the primary's, strategy packages included, found the same way.
    assert "the primary runs" not in result.stdout
    assert worker.ssh("readlink /srv/trad/current").stdout == primary.ssh("readlink /srv/trad/current").stdout
    assert trad_distribution(worker) == "0.1.0"
    assert release_entry_points(worker) == release_entry_points(primary)
    print(f"\nFIGURE time to add a worker host (deploy_to_server.sh wall time, fresh host): {took:.1f}s")
    assert "health check passed" in result.stdout and "issued (its own PostgreSQL role and Redis user)" in result.stdout
    for unit in ("redis-server", "postgresql", "nginx", "trad-api"):
        assert worker.ssh(f"systemctl is-active {unit}", check=False).stdout.strip() != "active", unit
    assert worker.ssh("ls -d /etc/systemd/system/trad*.service /etc/systemd/system/trad.target").stdout.split() == [
        "/etc/systemd/system/trad-worker@.service",
        "/etc/systemd/system/trad.target",
    ]
    assert worker.ssh("ls /etc/trad/credentials").stdout.split() == ["database_url", "redis_url"]
    modes = worker.ssh("stat -c '%a %U:%G' /etc/trad/credentials/database_url /etc/trad/trad.env /etc/trad/ca.crt")
    assert modes.stdout.split("\n")[:3] == ["600 root:root", "640 root:trad", "644 root:root"]
    database_url, redis_url = secret(worker, "database_url"), secret(worker, "redis_url")
    assert f"{WORKER_ROLE}:" in database_url and "sslmode=verify-full&sslrootcert=/etc/trad/ca.crt" in database_url
    assert redis_url.startswith(f"rediss://{WORKER_ROLE}:") and f"@{LISTEN}:{REDIS_TLS_PORT}/" in redis_url
    wait_until(lambda: workers_on(primary, WORKER) == 2, timeout=60, what="the worker host's workers in the queue")

    again, took = two_hosts.deploy(
        "redeploy the worker host", ROLE="worker", PRIMARY=PRIMARY, SERVER=WORKER, **packages
    )
    assert again.returncode == 0, again.stdout + again.stderr
    for step in (
        "access of trad-node2 to trad-primary: unchanged",
        "credentials /etc/trad/credentials: unchanged",
        "unchanged (already installed)",
        "systemd units: unchanged",
        "current release: unchanged",
    ):
        assert step in again.stdout, step
    assert secret(worker, "database_url") == database_url


def test_the_primary_refuses_plain_text_and_strangers_from_the_worker_network(two_hosts, tmp_path: Path):
    missing = [tool for tool in ("redis-cli", "psql") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on the test machine (redis-tools, postgresql-client)")
    net, worker = two_hosts.net, two_hosts.worker
    ca = tmp_path / "ca.crt"
    ca.write_text(worker.ssh("cat /etc/trad/ca.crt").stdout)
    password = secret(worker, "database_url").split(":")[2].split("@")[0]
    port = pg_port(two_hosts.primary)

    def redis(*args: str, auth: str = "") -> str:
        env = ["env", f"REDISCLI_AUTH={auth}"] if auth else []
        r = net.run("worker", *env, "timeout", "10", "redis-cli", "-h", LISTEN, *args, "ping")
        return r.stdout + r.stderr

    tls = ["-p", str(REDIS_TLS_PORT), "--tls", "--cacert", str(ca)]
    assert "Connection refused" in redis("-p", "6379")  # no plain-text port at all
    assert "PONG" not in redis("-p", str(REDIS_TLS_PORT))  # plain text to the TLS port
    assert "NOAUTH" in redis(*tls)
    assert "WRONGPASS" in redis(*tls, "--user", WORKER_ROLE, auth="wrong-password")
    assert "PONG" in redis(*tls, "--user", WORKER_ROLE, auth=password)  # the worker host's own user

    def psql(conninfo: str, pw: str) -> str:
        r = net.run(
            "worker",
            "env",
            f"PGPASSWORD={pw}",
            "psql",
            f"host={LISTEN} port={port} dbname=trad connect_timeout=5 {conninfo}",
            "-tAc",
            "SELECT 1",
        )
        return r.stdout + r.stderr

    verified = f"sslmode=verify-full sslrootcert={ca}"
    assert "no encryption" in psql(f"sslmode=disable user={WORKER_ROLE}", password)
    assert "password authentication failed" in psql(f"{verified} user={WORKER_ROLE}", "wrong-password")
    primary_pw = secret(two_hosts.primary, "database_url").split(":")[2].split("@")[0]
    assert "no pg_hba.conf entry" in psql(f"{verified} user=trad", primary_pw)  # the primary's own role stays local
    assert psql(f"{verified} user={WORKER_ROLE}", password).strip() == "1"


def trained_example(primary, job_id: str, host: str) -> None:
    """The job trained the example strategy on `host`, and its configuration names the package."""
    final = wait_status(primary, job_id)
    assert final["status"] == JobStatus.SUCCEEDED, final
    assert attempts(primary, job_id)[-1]["worker_name"].endswith(f"@{host}")
    config = api(primary, "GET", f"/api/v2/training/configurations/{final['configuration_id']}")
    assert (config["strategy"], config["strategy_package"], config["strategy_version"]) == EXAMPLE
    assert config["params"]["mode"] == "long_only" and config["params"]["fast"] < config["params"]["slow"]


def test_jobs_run_on_both_hosts(two_hosts):
    """The example strategy, deployed as a package to both hosts, trains over HTTP on each."""
    primary, worker = two_hosts.primary, two_hosts.worker
    narrowed = {"mode": "long_only", "slow": {"low": 20, "high": 60}}
    primary_workers(primary, start=False)
    on_worker = start_job(primary, 30, seed=21, strategy=EXAMPLE[0], params=narrowed)
    trained_example(primary, on_worker, WORKER)
    primary_workers(primary, start=True)
    worker.ssh("systemctl stop trad.target")
    on_primary = start_job(primary, 30, seed=22, strategy=EXAMPLE[0], params=narrowed)
    trained_example(primary, on_primary, PRIMARY)
    worker.ssh("systemctl start trad.target")
    wait_until(lambda: workers_on(primary, WORKER) == 2, timeout=120, what="the worker host's workers back")


def test_a_partitioned_worker_host_is_fenced_and_the_job_has_one_result(two_hosts):
    primary, worker, net = two_hosts.primary, two_hosts.worker, two_hosts.net
    primary_workers(primary, start=False)
    job_id = start_job(primary, 1200, seed=23)
    running_on(primary, job_id, WORKER, at_least=10)
    primary_workers(primary, start=True)
    cut = time.monotonic()
    net.set_link("worker", up=False)
    try:
        running_on(primary, job_id, PRIMARY, timeout=STALE_S + 120)
        print(f"\nFIGURE partition -> job running again on the primary: {time.monotonic() - cut:.1f}s")
    finally:
        net.set_link("worker", up=True)
    final = wait_status(primary, job_id, timeout=400)
    assert final["status"] == JobStatus.SUCCEEDED, final
    history = attempts(primary, job_id)
    assert [a["status"] for a in history] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED], history
    assert history[0]["worker_name"].endswith(f"@{WORKER}") and history[1]["worker_name"].endswith(f"@{PRIMARY}")
    assert psql_on_primary(primary, f"SELECT count(*) FROM trained_configurations WHERE job_id = '{job_id}'") == "1"
    # The cut-off attempt, back on the network, wrote nothing: its job process ended fenced.
    ended = wait_until(
        lambda: [
            line
            for line in worker.ssh("journalctl -u 'trad-worker@*' -o cat --no-pager", check=False).stdout.splitlines()
            if job_id in line and ("attempt 1 ended:" in line or "was superseded" in line)
        ],
        timeout=180,
        interval=2,
        what="the partitioned attempt to end",
    )
    print("\npartitioned attempt:", *ended, sep="\n  ")
    assert any("was superseded; stopping without writing" in line or "ended: fenced" in line for line in ended), ended
    print(f"worker host's workers listed after the partition healed: {workers_on(primary, WORKER)}")


def test_a_worker_host_powered_off_mid_job_loses_nothing(two_hosts):
    primary, worker = two_hosts.primary, two_hosts.worker
    primary_workers(primary, start=False)
    job_id = start_job(primary, 1200, seed=24)
    running_on(primary, job_id, WORKER, at_least=20)
    primary_workers(primary, start=True)
    print_connections(primary)
    cut = time.monotonic()
    worker.power_cut()
    running_on(primary, job_id, PRIMARY, timeout=STALE_S + 120)
    print(
        f"\nFIGURE power cut of the worker host -> its job running again on the primary: "
        f"{time.monotonic() - cut:.1f}s (HEARTBEAT_STALE_S={STALE_S})"
    )
    final = wait_status(primary, job_id, timeout=400)
    assert final["status"] == JobStatus.SUCCEEDED, final
    assert [a["status"] for a in attempts(primary, job_id)] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert final["resumed_from_iteration"] >= 20, "resumed from its persisted trials"
    wait_until(lambda: workers_on(primary, WORKER) == 0, timeout=120, what="the dead host's workers to expire")


def test_removing_a_worker_host_requeues_its_job_and_revokes_its_access(two_hosts, tmp_path: Path):
    primary, worker = two_hosts.primary, two_hosts.worker
    two_hosts.boot("worker")  # power back on: its enabled workers rejoin by themselves
    wait_until(lambda: workers_on(primary, WORKER) == 2, timeout=180, what="the rebooted host's workers")
    old_url = secret(worker, "database_url")
    primary_workers(primary, start=False)
    job_id = start_job(primary, 1200, seed=25)
    running_on(primary, job_id, WORKER, at_least=10)
    primary_workers(primary, start=True)
    result, took = two_hosts.deploy("remove the worker host", "--remove", ROLE="worker", PRIMARY=PRIMARY, SERVER=WORKER)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\nFIGURE time to remove a worker host: {took:.1f}s")
    assert worker.ssh("systemctl is-active trad-worker@1 trad-worker@2", check=False).stdout.split() == [
        "inactive",
        "inactive",
    ]
    assert worker.ssh("ls /etc/trad/credentials").stdout.split() == []
    assert primary.ssh("bash /srv/trad/current/ops/scripts/remote_access.sh list").stdout.strip() == ""
    assert psql_on_primary(primary, f"SELECT count(*) FROM pg_roles WHERE rolname = '{WORKER_ROLE}'") == "0"
    assert WORKER_ROLE not in primary.ssh("cat /etc/redis/trad-workers.conf").stdout
    final = wait_status(primary, job_id, timeout=400)
    assert final["status"] == JobStatus.SUCCEEDED, final
    history = attempts(primary, job_id)
    assert [a["status"] for a in history] == [AttemptStatus.PREEMPTED, AttemptStatus.SUCCEEDED], history
    assert history[-1]["worker_name"].endswith(f"@{PRIMARY}")
    # The revoked credentials no longer open anything, even over TLS.
    if shutil.which("psql"):
        ca = tmp_path / "ca.crt"
        ca.write_text(worker.ssh("cat /etc/trad/ca.crt").stdout)
        password = old_url.split(":")[2].split("@")[0]
        r = two_hosts.net.run(
            "worker", "env", f"PGPASSWORD={password}", "psql",
            f"host={LISTEN} port={pg_port(primary)} dbname=trad user={WORKER_ROLE} sslmode=verify-full "
            f"sslrootcert={ca} connect_timeout=5", "-tAc", "SELECT 1",
        )  # fmt: skip
        assert r.returncode != 0 and ("authentication failed" in r.stderr or "no pg_hba.conf entry" in r.stderr), r
