"""End to end on a real systemd host: deploy over SSH, run jobs with curl, restart and kill
workers mid-job, reach the API only over TLS from beyond loopback, keep secrets out of job
processes, restart units without ever locking them out, run every command of the runbook as
written, power the machine off with jobs queued, redeploy, and roll back a broken release.
The tests run in order and share one container."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.status import AttemptStatus, JobStatus
from tests.deploy.api import api, progress, secret, start_job, token, wait_ready, wait_status
from tests.deploy.runbook import runnable
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.e2e
STATE_FILES = (
    "/etc/trad/trad.env /etc/trad/credentials/* /etc/trad/tls/* /etc/systemd/system/trad* /etc/redis/trad*.conf "
    "/etc/nginx/sites-available/trad /etc/nginx/nginx.conf /usr/local/bin/trad"
)
OUTSIDE, CLIENT = "10.213.7.1", "10.213.7.2"  # the container's and the test's ends of a veth pair


def running_worker(vm, job_id: str, at_least: int) -> str:
    wait_until(
        lambda: (p := progress(vm, job_id))["status"] == JobStatus.RUNNING and (p["iteration"] or 0) >= at_least,
        timeout=180,
        interval=0.2,
        what="job to be running",
    )
    detail = api(vm, "GET", f"/api/v2/training/jobs/{job_id}")
    name = detail["attempt_history"][-1]["worker_name"]  # trad-worker-N@host
    return "trad-worker@" + name.split("@")[0].rsplit("-", 1)[1]


def state_digest(vm) -> str:
    return vm.ssh(
        f"sha256sum {STATE_FILES}; stat -c '%n %a %U:%G' {STATE_FILES}; ls /srv/trad/releases; "
        "readlink /srv/trad/current"
    ).stdout


def test_fresh_deploy(vm, deploy):
    result = deploy(workers=None, label="fresh deploy")  # as README says: WORKERS unset, 2 workers
    assert result.returncode == 0, result.stdout + result.stderr
    assert "health check passed" in result.stdout
    assert "created with new secrets" in result.stdout
    assert "nginx: TLS proxy on port 443" in result.stdout
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error:" in line]
    assert errors == [], errors  # a first install that succeeds reports no error
    # The upload directory is gone, and its root-only parent is all that is left.
    assert vm.ssh("ls -A /var/lib/trad-deploy").stdout.strip() == ""
    assert vm.ssh("stat -c '%a %U' /var/lib/trad-deploy").stdout.strip() == "700 root"
    assert vm.ssh("test ! -e /var/tmp/trad-deploy", check=False).returncode == 0


def test_services_run_as_trad_on_loopback_with_a_private_env_file(vm):
    for unit in ("trad-api", "trad-worker@1", "trad-worker@2"):
        pid = vm.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        assert vm.ssh(f"ps -o user= -p {pid}").stdout.strip() == "trad", unit
    listeners = vm.ssh("ss -ltnH").stdout.split("\n")
    for line in listeners:
        if not line.strip():
            continue
        local = line.split()[3]
        port = local.rsplit(":", 1)[1]
        if port in ("6379", "8000") or port.startswith("543"):
            assert local.startswith(("127.0.0.1:", "[::1]:")), f"{local} listens beyond loopback"
    assert vm.ssh("stat -c '%a %U:%G' /etc/trad/trad.env").stdout.strip() == "640 root:trad"
    assert vm.ssh("grep -ciE 'password|token|_url' /etc/trad/trad.env", check=False).stdout.strip() == "0"
    assert vm.ssh("stat -c '%a %U' /etc/trad/credentials /etc/trad/credentials/api_token").stdout.split("\n")[:2] == [
        "700 root",
        "600 root",
    ]
    status = vm.ssh("systemctl status trad-worker@1 --no-pager", check=False).stdout
    assert 'Status: "idle"' in status or 'Status: "job ' in status, status
    assert vm.ssh("systemctl is-active trad.target").stdout.strip() == "active"


def test_curl_starts_a_job_and_follows_its_progress(vm):
    vm.ssh("trad candles synth --symbol BTCUSDT --timeframe 1m --bars 150000")
    job_id = start_job(vm, 30)
    stream = vm.curl(
        "-N",
        f"http://127.0.0.1:8000/api/v2/training/jobs/{job_id}/progress?follow=true",
        "-H",
        f"Authorization: Bearer {token(vm)}",
    )
    lines = [json.loads(line) for line in stream.stdout.splitlines() if line.strip()]
    assert lines[-1]["status"] == JobStatus.SUCCEEDED and lines[-1]["percent"] == 100.0
    assert lines[-1]["configuration_id"]


def test_the_compiled_backtest_is_kept_in_the_workers_cache_directory(vm):
    """The job above compiled the backtest kernel (numba) under ProtectSystem=strict into the
    unit's CacheDirectory=, owned by trad: later job processes load it instead of compiling."""
    listing = vm.ssh("find /var/cache/trad/numba -name '*.nbi' -printf '%u %f\\n'").stdout.split("\n")
    owners = {line.split()[0] for line in listing if line.strip()}
    assert owners == {"trad"}, listing
    assert any("kernel" in line for line in listing), listing


def test_restart_of_a_worker_mid_job_resumes_the_job(vm):
    job_id = start_job(vm, 1200, seed=2)
    unit = running_worker(vm, job_id, at_least=20)
    vm.ssh(f"systemctl restart {unit}")
    final = wait_status(vm, job_id)
    assert final["status"] == JobStatus.SUCCEEDED, final
    history = [a["status"] for a in api(vm, "GET", f"/api/v2/training/jobs/{job_id}")["attempt_history"]]
    assert history == [AttemptStatus.PREEMPTED, AttemptStatus.SUCCEEDED], history
    assert final["resumed_from_iteration"] >= 20, "resumed, not restarted"


def test_kill_of_a_worker_mid_job_is_recovered(vm):
    job_id = start_job(vm, 1200, seed=3)
    unit = running_worker(vm, job_id, at_least=20)
    killed = time.monotonic()
    killed_by = vm.ssh(f"systemctl kill -s KILL {unit}", check=False)
    print(f"\nsystemctl kill: {killed_by.returncode} {killed_by.stderr.strip()}")
    final = wait_status(vm, job_id, timeout=300)
    assert final["status"] == JobStatus.SUCCEEDED, final
    history = [a["status"] for a in api(vm, "GET", f"/api/v2/training/jobs/{job_id}")["attempt_history"]]
    assert history[0] == AttemptStatus.LOST and history[-1] == AttemptStatus.SUCCEEDED, history
    print(f"\nkill -9 of {unit}: job finished {time.monotonic() - killed:.0f}s after the kill")


@pytest.fixture
def outside(vm):
    """A second network namespace the test makes, joined to the container by a veth pair:
    traffic from it reaches the container's non-loopback address only."""
    ns = f"trad-e2e-{os.getpid()}"
    host = ["ip", "netns", "exec", ns]
    into_vm = ["nsenter", "-t", str(vm.pid), "-n"]
    for cmd in (
        ["ip", "netns", "add", ns],
        [*host, "ip", "link", "add", "trad-out", "type", "veth", "peer", "name", "trad-in"],
        [*host, "ip", "link", "set", "trad-in", "netns", str(vm.pid)],
        [*host, "ip", "addr", "add", f"{CLIENT}/30", "dev", "trad-out"],
        [*host, "ip", "link", "set", "trad-out", "up"],
        [*host, "ip", "link", "set", "lo", "up"],
        [*into_vm, "ip", "addr", "add", f"{OUTSIDE}/30", "dev", "trad-in"],
        [*into_vm, "ip", "link", "set", "trad-in", "up"],
    ):
        subprocess.run(cmd, check=True, capture_output=True)

    def curl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*host, "curl", "-sS", *args], capture_output=True, text=True, timeout=60)

    yield curl
    subprocess.run(["ip", "netns", "del", ns], check=False)


def test_from_beyond_loopback_the_api_answers_only_over_tls(vm, outside, tmp_path: Path):
    plain = outside("-m", "5", f"http://{OUTSIDE}:8000/readyz")
    assert plain.returncode == 7, plain  # connection refused: the API listens on loopback only
    crt_file = tmp_path / "trad.crt"
    crt_file.write_text(vm.ssh("cat /etc/trad/tls/trad.crt").stdout)
    tls = ["--cacert", str(crt_file), "--resolve", f"localhost:443:{OUTSIDE}"]
    ready = outside("-fsS", *tls, "https://localhost/readyz")
    assert ready.returncode == 0 and json.loads(ready.stdout)["status"] == "ready", ready
    queue = outside("-fsS", *tls, "-H", f"Authorization: Bearer {token(vm)}", "https://localhost/api/v2/training/queue")
    assert queue.returncode == 0, queue
    anonymous = outside("-o", "/dev/null", "-w", "%{http_code}", *tls, "https://localhost/api/v2/training/queue")
    assert anonymous.stdout == "401"
    for path in ("/metrics", "//metrics", "/%6detrics", "/metrics?x=1"):
        refused = outside("-o", "/dev/null", "-w", "%{http_code}", *tls, f"https://localhost{path}")
        assert refused.stdout == "403", (path, refused)
    local = vm.curl("-fsS", "http://127.0.0.1:8000/metrics")
    assert local.returncode == 0 and "trad_jobs" in local.stdout
    # A redirect through the proxy keeps its scheme and host (the API believes nginx's
    # X-Forwarded-Proto), and lands on the refused path.
    redirect = outside("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", *tls, "https://localhost/metrics/")
    assert redirect.stdout == "307 https://localhost/metrics", redirect


@pytest.fixture
def queued_job(vm) -> Iterator[str]:
    """A job that stays queued for streams to follow: the workers are stopped until the end."""
    vm.ssh("systemctl stop 'trad-worker@*'")
    try:
        yield start_job(vm, 10, seed=40)
    finally:
        vm.ssh("systemctl start trad.target")


@pytest.fixture
def tls_ca(vm, tmp_path: Path) -> Path:
    crt_file = tmp_path / "trad.crt"
    crt_file.write_text(vm.ssh("cat /etc/trad/tls/trad.crt").stdout)
    return crt_file


@contextlib.contextmanager
def api_settings(vm, **settings: str) -> Iterator[None]:
    """trad-api restarted with these settings (a runtime drop-in), then without them."""
    dropin = "/run/systemd/system/trad-api.service.d"
    lines = "".join(f"Environment={name}={value}\\n" for name, value in settings.items())
    vm.ssh(f"mkdir -p {dropin} && printf '[Service]\\n{lines}' > {dropin}/test.conf && systemctl daemon-reload")
    vm.ssh("systemctl restart trad-api")
    wait_ready(vm)
    try:
        yield
    finally:
        vm.ssh(f"rm -rf {dropin} && systemctl daemon-reload && systemctl restart trad-api")
        wait_ready(vm)


def through_the_proxy(vm, job_id: str, ca: Path, groups: list[dict], while_open=lambda: None) -> tuple[dict, dict]:
    """Progress streams of `job_id` opened through nginx from inside the server's network
    namespace (tests/deploy/streams.py: each group from its own source address), held while
    `while_open()` runs, then the job is canceled and each stream read to its end. Returns
    what opened and how the streams ended."""
    env = {
        **os.environ,
        "TRAD_TOKEN": token(vm),
        "TRAD_CA": str(ca),
        "TRAD_PATH": f"/api/v2/training/jobs/{job_id}/progress?follow=true",
    }
    proc = subprocess.Popen(
        ["nsenter", "-t", str(vm.pid), "-n", sys.executable, "-m", "tests.deploy.streams", json.dumps(groups)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        opened = json.loads(proc.stdout.readline())
        while_open()
        api(vm, "DELETE", f"/api/v2/training/jobs/{job_id}")
        proc.stdin.write("\n")
        proc.stdin.flush()
        ended = json.loads(proc.stdout.readline())
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return opened, ended


def test_the_proxy_names_each_client_and_a_client_cannot_name_itself(vm, queued_job, tls_ca):
    """With one stream allowed per client, two clients behind nginx get one each (the API sees
    their addresses, not nginx's), and X-Forwarded-For sent by a client changes nothing."""
    groups = [
        {"source": "127.0.0.2", "count": 1},
        {"source": "127.0.0.3", "count": 1},
        {"source": "127.0.0.2", "count": 1, "headers": {"X-Forwarded-For": "192.0.2.1"}},
    ]
    with api_settings(vm, FOLLOW_MAX_STREAMS_PER_CLIENT="1"):
        opened, ended = through_the_proxy(vm, queued_job, tls_ca, groups)
    print(f"\none stream per client through nginx: {opened} {ended}")
    assert [g["statuses"] for g in opened["opened"]] == [{"200": 1}, {"200": 1}, {"429": 1}], opened
    assert ended == {"ended": {"canceled": 2}}


STREAMS_PER_SOURCE, SOURCES = 750, ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")  # under 1,000 per client


def test_three_thousand_idle_streams_through_the_proxy(vm, queued_job, tls_ca):
    """nginx as deployed carries thousands of followers (two connections each), and answers
    other requests meanwhile; each stream sees its job end."""
    # 24576 and 65536 where nginx may open that many files; 1,024 fewer connections than the
    # hard limit it runs under where that is lower (this container's: the test machine's).
    conf = vm.ssh("cat /etc/nginx/nginx.conf").stdout
    connections = int(re.search(r"^\s*worker_connections (\d+);", conf, re.M)[1])
    files = int(re.search(r"^worker_rlimit_nofile (\d+);", conf, re.M)[1])
    hard = int(vm.ssh("awk '/^Max open files/ {print $5}' /proc/$(cat /run/nginx.pid)/limits").stdout)
    assert (files, connections) == ((65536, 24576) if hard >= 65536 else (hard, hard - 1024)), conf
    workers = vm.ssh(
        "for p in $(pgrep -x nginx); do grep -q worker /proc/$p/cmdline && grep 'open files' /proc/$p/limits; done",
        check=False,
    ).stdout.splitlines()
    assert workers and all(line.split()[3] == str(files) for line in workers), workers
    print(f"\nnginx: worker_connections {connections}, worker_rlimit_nofile {files} (hard limit {hard})")
    health: list[subprocess.CompletedProcess] = []

    def check_health() -> None:
        args = ["-fsS", "--cacert", str(tls_ca), "--resolve", "localhost:443:127.0.0.1"]
        health.append(vm.curl(*args, "https://localhost/healthz"))
        health.append(
            vm.curl(*args, "-H", f"Authorization: Bearer {token(vm)}", "https://localhost/api/v2/training/queue")
        )

    groups = [{"source": source, "count": STREAMS_PER_SOURCE} for source in SOURCES]
    started = time.monotonic()
    opened, ended = through_the_proxy(vm, queued_job, tls_ca, groups, while_open=check_health)
    took = time.monotonic() - started
    print(f"\n{len(SOURCES) * STREAMS_PER_SOURCE} streams through nginx ({took:.0f}s): {opened} {ended}")
    assert [g["statuses"] for g in opened["opened"]] == [{"200": STREAMS_PER_SOURCE}] * len(SOURCES), opened
    assert all(h.returncode == 0 for h in health), health
    assert ended == {"ended": {"canceled": len(SOURCES) * STREAMS_PER_SOURCE}}
    errors = vm.ssh("grep -c 'worker_connections are not enough' /var/log/nginx/error.log", check=False).stdout
    assert errors.strip() in ("", "0"), errors


def test_job_processes_hold_no_secret_and_workers_no_api_token(vm):
    secrets = [token(vm), secret(vm, "database_url").split(":")[2].split("@")[0]]
    secrets.append(secret(vm, "redis_url").split(":")[2].split("@")[0])
    job_id = start_job(vm, 600, seed=4)
    unit = running_worker(vm, job_id, at_least=5)
    main_pid = vm.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
    horse = vm.ssh(f"pgrep -P {main_pid}").stdout.split()
    assert horse, "the job runs in a child process of the worker"
    for pid in [main_pid, *horse]:
        environ = vm.ssh(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
        assert "CREDENTIALS_DIRECTORY=" in environ
        for value in secrets:
            assert value not in environ, f"a secret in the environment of {pid}"
        for name in ("DATABASE_URL", "REDIS_URL", "API_TOKEN", "REDIS_APP_PASSWORD"):
            assert f"{name}=" not in environ
    assert vm.ssh(f"ls /run/credentials/{unit}.service").stdout.split() == ["database_url", "redis_url"]
    api(vm, "DELETE", f"/api/v2/training/jobs/{job_id}")
    assert wait_status(vm, job_id)["status"] == "canceled"


def test_twenty_restarts_in_a_minute_leave_the_worker_running(vm):
    result = vm.ssh(
        "start=$(date +%s); for i in $(seq 20); do systemctl restart trad-worker@2 || exit 1; done; "
        "echo $(( $(date +%s) - start ))",
        timeout=180,
    )
    print(f"\n20 restarts of trad-worker@2: {result.stdout.strip()} s")
    assert vm.ssh("systemctl is-active trad-worker@2").stdout.strip() == "active"
    status = vm.ssh("systemctl status trad-worker@2 --no-pager", check=False).stdout
    assert "start-limit" not in status
    for _ in range(15):  # and the API, the same way
        vm.ssh("systemctl restart trad-api")
    assert vm.ssh("systemctl is-active trad-api").stdout.strip() == "active"


def test_a_crash_loop_is_throttled_and_shows_why(vm):
    """The worker unit as installed, under another name (so no trad-worker@* pattern of the
    runbook matches it), with a program that fails at once."""
    unit = "trad-crashloop@1"
    vm.ssh(
        "cp /etc/systemd/system/trad-worker@.service /run/systemd/system/trad-crashloop@.service && "
        "mkdir -p /run/systemd/system/trad-crashloop@.service.d && "
        "printf '[Service]\\nExecStart=\\nExecStart=/bin/false\\n' "
        "> /run/systemd/system/trad-crashloop@.service.d/crash.conf && systemctl daemon-reload"
    )
    try:
        vm.ssh(f"systemctl start {unit}", check=False)
        wait_until(
            lambda: int(vm.ssh(f"systemctl show -p NRestarts --value {unit}").stdout.strip() or 0) >= 2,
            timeout=60,
            interval=0.5,
            what=f"{unit} to be restarted twice",
        )
        assert vm.ssh(f"systemctl show -p RestartUSec --value {unit}").stdout.strip() == "5s"
        status = wait_until(
            lambda: (
                "activating (auto-restart)" in (s := vm.ssh(f"systemctl status {unit} --no-pager", check=False).stdout)
                and s
            ),
            timeout=30,
            interval=0.2,
            what="the crash loop to show in systemctl status",
        )
        assert "Result: exit-code" in status and "status=1/FAILURE" in status, status
    finally:
        vm.ssh(
            f"systemctl stop {unit}; rm -rf /run/systemd/system/trad-crashloop@.service*; "
            f"systemctl reset-failed {unit}; systemctl daemon-reload",
            check=False,
        )


def test_stopping_the_target_returns_once_every_unit_is_inactive(vm):
    job_id = start_job(vm, 300, seed=5)
    running_worker(vm, job_id, at_least=5)
    states = vm.ssh(
        "systemctl stop trad.target; "
        "systemctl show -p ActiveState --value trad-api trad-worker@1 trad-worker@2 trad.target",
        timeout=120,
    ).stdout.split()
    assert states == ["inactive"] * 4, states
    vm.ssh("systemctl start trad.target")
    wait_ready(vm)
    assert wait_status(vm, job_id, timeout=300)["status"] == "succeeded"
    history = [a["status"] for a in api(vm, "GET", f"/api/v2/training/jobs/{job_id}")["attempt_history"]]
    assert history == ["preempted", "succeeded"], history


@contextlib.contextmanager
def local_exchange(vm, port: int = 8765):
    """tests/exchange_server.py inside the container (it has no internet), with the services'
    settings pointing `trad candles fetch` and the workers' refresh jobs at it; both undone at the end."""
    source = (ROOT / "tests" / "exchange_server.py").read_text()
    vm.ssh(f"cat > /var/tmp/exchange_server.py <<'PYEOF'\n{source}\nPYEOF")
    vm.ssh(
        "systemd-run --quiet --collect --unit=trad-test-exchange "
        f"python3 /var/tmp/exchange_server.py --port {port} --since 2024-01-01"
    )
    wait_until(
        lambda: vm.ssh(f"curl -sf http://127.0.0.1:{port}/api/v3/exchangeInfo", check=False).returncode == 0,
        timeout=30,
        what="the local exchange answers",
    )
    # The workers read it when they start (a refresh job runs in them).
    vm.ssh(f"echo EXCHANGE_BASE_URL=http://127.0.0.1:{port} >> /etc/trad/trad.env; systemctl restart 'trad-worker@*'")
    try:
        yield
    finally:
        vm.ssh(
            "sed -i '/^EXCHANGE_BASE_URL=/d' /etc/trad/trad.env; systemctl stop trad-test-exchange; "
            "systemctl restart 'trad-worker@*'",
            check=False,
        )


def run_block(vm, name: str, env: str = "", timeout: float = 300):
    """One block of docs/operations.md, run as written; `env` sets the variables it names."""
    commands = runnable()[name]
    result = vm.ssh(f"set -e\n{env}\n{commands}", check=False, timeout=timeout)
    assert result.returncode == 0, f"runbook block {name!r} failed:\n{commands}\n{result.stdout}\n{result.stderr}"
    # Run from root's home, as an operator does: nothing may complain it cannot enter it.
    assert "could not change directory" not in result.stderr, (name, result.stderr)
    return result.stdout


def test_every_runbook_command_works_as_written(vm):
    """Every `run:` block of docs/operations.md, in the order an operator would need them."""
    wait_ready(vm)
    assert "ready" in run_block(vm, "https")
    vm.ssh(
        "printf 'timestamp,open,high,low,close,volume\\n' > /var/tmp/btcusdt-1m.csv && "
        'for i in $(seq 0 99); do echo "$((1735689600 + 60 * i)),100,101,99,100.5,3"; done >> /var/tmp/btcusdt-1m.csv'
    )
    data = run_block(vm, "data")
    assert "new bars for BTCUSDT 1m" in data and "ETHUSDT\t1m\t150000" in data, data
    with local_exchange(vm):
        fetched = run_block(vm, "fetch")
        refreshed = run_block(vm, "refresh", env=f"TOKEN={token(vm)}")
        scheduled = json.loads(run_block(vm, "schedule-refresh", env=f"TOKEN={token(vm)}").strip().splitlines()[-1])
    assert scheduled["name"] == "btc-nightly" and scheduled["next_fire_at"], scheduled
    assert scheduled["refresh"] == {"exchange": "binance", "symbol": "BTC/USDT"}, scheduled
    items = [json.loads(line) for line in refreshed.splitlines() if line.startswith('{"symbol"')]
    series = {(s["symbol"], s["timeframe"]): s for s in items}
    btc_4h = series[("BTCUSDT", "4h")]
    assert btc_4h["sources"] == ["binance"] and btc_4h["first"] == "2024-01-01T00:00:00Z", refreshed
    assert btc_4h["bars"] > 4000 and btc_4h["last_refresh_at"] is not None, refreshed
    head = "binance BTC/USDT 1h -> BTCUSDT (source binance): "
    runs = [line for line in fetched.splitlines() if line.startswith(head)]
    assert len(runs) == 2 and re.search(r": \d{5} bars fetched in \d+ requests, \d{5} new$", runs[0]), fetched
    assert "up to date" in runs[1] or "resumed after" in fetched, fetched  # the second run resumes
    assert re.search(r"^BTCUSDT\t1h\t\d{5}\t2024-01-01T00:00:00\+00:00\t.*\tbinance$", fetched, re.M), fetched
    job_id = start_job(vm, 40, seed=6)
    jobs = run_block(vm, "jobs", env=f"JOB={job_id}")
    assert any(line.startswith("succeeded") and "100.0%" in line for line in jobs.splitlines()), jobs
    assert job_id in jobs  # jobs list and jobs show name it
    run_block(vm, "day-to-day")
    assert vm.ssh("systemctl is-active trad-worker@1").stdout.strip() == "active"
    run_block(vm, "scale")
    assert vm.ssh("systemctl is-enabled trad-worker@3", check=False).stdout.strip() == "disabled"
    logs = run_block(vm, "logs", env=f"JOB={job_id}")
    lines = [json.loads(line) for line in logs.splitlines()]
    about_job = [line for line in lines if line.get("job_id") == job_id]
    assert any(line["logger"].startswith("rq.") for line in about_job), "RQ's lines carry the job id"
    release = vm.ssh("basename $(readlink /srv/trad/current)").stdout.strip()
    run_block(vm, "rollback", env=f"VERSION={release}")
    run_block(vm, "backup")
    backup = vm.ssh("ls /var/backups/trad-*.dump").stdout.split()[-1]
    assert vm.ssh(f"stat -c '%a %U' {backup}").stdout.strip() == "600 root"
    run_block(vm, "restore", env=f"BACKUP={backup}")
    wait_ready(vm)
    assert api(vm, "GET", f"/api/v2/training/jobs/{job_id}")["status"] == "succeeded"
    assert "# Keyspace" in run_block(vm, "redis-admin")
    old = token(vm)
    run_block(vm, "rotate-token")
    assert token(vm) != old
    wait_ready(vm)
    assert api(vm, "GET", "/api/v2/training/queue") is not None


def test_poweroff_and_boot_with_jobs_queued_loses_none(vm):
    vm.ssh("systemctl stop trad-worker@1 trad-worker@2")
    job_ids = [start_job(vm, 15, seed=10 + i) for i in range(3)]
    assert all(progress(vm, j)["status"] == JobStatus.QUEUED for j in job_ids)
    vm.poweroff()
    vm.boot()
    for job_id in job_ids:
        assert wait_status(vm, job_id, timeout=300)["status"] == JobStatus.SUCCEEDED


def main_pids(vm) -> list[str]:
    return vm.ssh("systemctl show -p MainPID --value trad-api trad-worker@1 trad-worker@2").stdout.split()


def test_second_deploy_changes_nothing_and_restarts_nothing(vm, deploy):
    before, pids = state_digest(vm), main_pids(vm)
    result = deploy(label="no-change redeploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_digest(vm) == before
    assert main_pids(vm) == pids, "a deploy with nothing to change restarts nothing"
    out = result.stdout
    for step in (
        "user trad: unchanged",
        "env file /etc/trad/trad.env: unchanged",
        "role and database trad: unchanged",
        "Redis already configured",
        "unchanged (already installed)",
        "systemd units: unchanged",
        "nginx: unchanged",
        "enabled units: unchanged",
        "current release: unchanged",
        "nothing to restart",
    ):
        assert step in out, step
    assert "created" not in out and "installed into" not in out


def copy_of_the_tree(tree: Path) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    return tree


def test_no_request_fails_while_the_api_restarts_or_a_deploy_runs(vm, deploy, tmp_path: Path):
    """10 requests a second through nginx (reads, and starts with an Idempotency-Key) during
    `systemctl restart trad-api`, a deploy with nothing to change, and an upgrade to a new
    release: the API's listening socket is systemd's, so a restart refuses no connection."""
    poller = base64.b64encode((ROOT / "tests/deploy/poller.py").read_bytes()).decode()
    vm.ssh(
        f"echo {poller} | base64 -d > /root/poller.py; rm -f /root/poll.jsonl*\n"
        # Only the poller in the background, with no descriptor of this ssh session.
        "nohup python3 /root/poller.py /root/poll.jsonl /etc/trad/credentials/api_token "
        "> /root/poller.err 2>&1 < /dev/null &\necho $! > /root/poller.pid"
    )

    def polled() -> list[dict]:
        return [json.loads(line) for line in vm.ssh("cat /root/poll.jsonl", check=False).stdout.splitlines()]

    wait_until(lambda: len(polled()) >= 20, timeout=60, interval=0.5, what="the poller to be under way")
    vm.ssh("systemctl restart trad-api")
    assert deploy(label="no-change redeploy under load").returncode == 0
    upgrade = copy_of_the_tree(tmp_path / "upgrade")
    (upgrade / "docs/operations.md").write_text((upgrade / "docs/operations.md").read_text() + "\n")
    before = vm.ssh("readlink /srv/trad/current").stdout.strip()
    result = deploy(tree=upgrade, label="upgrade under load")
    assert result.returncode == 0, result.stdout + result.stderr
    assert vm.ssh("readlink /srv/trad/current").stdout.strip() != before
    vm.ssh(
        "sleep 2; touch /root/poll.jsonl.stop; while kill -0 $(cat /root/poller.pid) 2>/dev/null; do sleep 0.5; done;"
    )
    lines = polled()
    failed = [line for line in lines if line.get("status") not in (200, 202)]
    starts = [line for line in lines if line["kind"] == "start"]
    jobs_by_key: dict[str, set[str]] = {}
    for line in starts:
        jobs_by_key.setdefault(line["key"], set()).add(line.get("job_id"))
    print(
        f"\npoller: {len(lines)} requests through nginx, {len(failed)} failed, {len(jobs_by_key)} keys, "
        f"slowest {max(line['took'] for line in lines):.1f}s"
    )
    assert failed == [], failed[:10]
    assert len(lines) > 200 and len(starts) > 50, vm.ssh("cat /root/poller.err", check=False).stdout
    assert all(len(jobs) == 1 for jobs in jobs_by_key.values()), jobs_by_key  # one job per key, no duplicate
    assert len({job for jobs in jobs_by_key.values() for job in jobs}) == len(jobs_by_key)


def test_broken_release_rolls_back_by_itself(vm, deploy, tmp_path: Path):
    live = vm.ssh("readlink /srv/trad/current").stdout.strip()
    tree = copy_of_the_tree(tmp_path / "broken")
    main = tree / "app/api/__main__.py"
    main.write_text(
        main.read_text().replace(
            "def main() -> None:\n", "def main() -> None:\n    raise SystemExit('broken on purpose')\n"
        )
    )
    since = vm.ssh("date +%s").stdout.strip()
    result = deploy(tree=tree, label="broken deploy")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "rolled back to" in result.stderr, out
    # The failed unit ends the health check at once, named, with its last lines, and no
    # wall of connection errors while it waits.
    assert "unit FAILED: trad-api.service" in result.stdout and "    broken on purpose" in result.stdout, out
    assert "curl: (7)" not in out, out
    assert vm.ssh("readlink /srv/trad/current").stdout.strip() == live
    ready = vm.curl("-fsS", "http://127.0.0.1:8000/readyz")
    assert ready.returncode == 0 and json.loads(ready.stdout)["status"] == "ready"
    journal = vm.ssh(f"journalctl -u trad-api -o short-unix --no-pager --since @{since}").stdout.splitlines()
    # Rolled back before systemd tried the broken release a second time (RestartSec=5).
    assert sum("broken on purpose" in line for line in journal) == 1, journal
    failed = next(float(line.split()[0]) for line in journal if "Main process exited" in line)
    started = next(
        float(line.split()[0]) for line in journal if "Started trad-api" in line and float(line.split()[0]) > failed
    )
    print(f"\nbroken release: its API failed, the previous one served again {started - failed:.1f}s later")
    # Releases in deploy order: the live one first, the broken one named as such.
    releases = vm.ssh("trad releases").stdout.splitlines()
    assert releases[0].split()[0] == os.path.basename(live) and releases[0].endswith("live"), releases
    assert any(line.split()[0].endswith(".broken") and "broken: failed its health check" in line for line in releases)
    assert vm.ssh("ls -t /srv/trad/releases").stdout.split()[0] == os.path.basename(live)
