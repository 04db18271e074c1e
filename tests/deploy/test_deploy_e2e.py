"""End to end on a real systemd host: deploy over SSH, run jobs with curl, restart and kill
workers mid-job, power the machine off with jobs queued, redeploy, and roll back a broken
release. The tests run in order and share one container."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from app.status import AttemptStatus, JobStatus
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.e2e
STATE_FILES = "/etc/trad/trad.env /etc/systemd/system/trad* /etc/redis/trad*.conf"


def env_value(vm, name: str) -> str:
    out = vm.ssh(f"sed -n 's/^{name}=//p' /etc/trad/trad.env").stdout.strip()
    assert out, name
    return out


def api(vm, method: str, path: str, body: dict | None = None) -> dict:
    args = ["-X", method, f"http://127.0.0.1:8000{path}", "-H", f"Authorization: Bearer {env_value(vm, 'API_TOKEN')}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    result = vm.curl(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_job(vm, n_iterations: int, seed: int = 1) -> str:
    body = {
        "strategy": "sma_crossover",
        "symbol": "BTCUSDT",
        "timeframe": "1m",
        "n_iterations": n_iterations,
        "seed": seed,
    }
    return api(vm, "POST", "/api/v2/training/start", body)["job_id"]


def progress(vm, job_id: str) -> dict:
    return api(vm, "GET", f"/api/v2/training/jobs/{job_id}/progress")


def wait_status(
    vm, job_id: str, statuses=(JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED), timeout: float = 300
) -> dict:
    return wait_until(
        lambda: (p := progress(vm, job_id))["status"] in statuses and p,
        timeout=timeout,
        interval=0.5,
        what=f"job {job_id} to reach {statuses}",
    )


def running_worker(vm, job_id: str, at_least: int) -> str:
    wait_until(
        lambda: (p := progress(vm, job_id))["status"] == JobStatus.RUNNING and (p["iteration"] or 0) >= at_least,
        timeout=180,
        interval=0.2,
        what="job to be running",
    )
    detail = api(vm, "GET", f"/api/v2/training/jobs/{job_id}")
    name = detail["attempt_history"][-1]["worker_name"]  # trad-worker-N
    return "trad-worker@" + name.rsplit("-", 1)[1]


def state_digest(vm) -> str:
    return vm.ssh(
        f"sha256sum {STATE_FILES}; stat -c '%n %a %U:%G' {STATE_FILES}; ls /srv/trad/releases; "
        "readlink /srv/trad/current"
    ).stdout


def test_fresh_deploy(vm, deploy):
    result = deploy(label="fresh deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "health check passed" in result.stdout
    assert "created with new secrets" in result.stdout


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
        if port in ("6379",) or port.startswith("543"):
            assert local.startswith(("127.0.0.1:", "[::1]:")), f"{local} listens beyond loopback"
    assert vm.ssh("stat -c '%a %U:%G' /etc/trad/trad.env").stdout.strip() == "640 root:trad"
    status = vm.ssh("systemctl status trad-worker@1 --no-pager", check=False).stdout
    assert 'Status: "idle"' in status or 'Status: "job ' in status, status
    assert vm.ssh("systemctl is-active trad.target").stdout.strip() == "active"


def test_curl_starts_a_job_and_follows_its_progress(vm):
    vm.ssh(
        "cd /srv/trad/current && runuser -u trad -- venv/bin/python -m app.cli candles synth "
        "--symbol BTCUSDT --timeframe 1m --bars 150000"
    )
    job_id = start_job(vm, 30)
    stream = vm.curl(
        "-N",
        f"http://127.0.0.1:8000/api/v2/training/jobs/{job_id}/progress?follow=true",
        "-H",
        f"Authorization: Bearer {env_value(vm, 'API_TOKEN')}",
    )
    lines = [json.loads(line) for line in stream.stdout.splitlines() if line.strip()]
    assert lines[-1]["status"] == JobStatus.SUCCEEDED and lines[-1]["percent"] == 100.0
    assert lines[-1]["configuration_id"]


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
    vm.ssh(f"systemctl kill -s KILL {unit}")
    final = wait_status(vm, job_id, timeout=300)
    assert final["status"] == JobStatus.SUCCEEDED, final
    history = [a["status"] for a in api(vm, "GET", f"/api/v2/training/jobs/{job_id}")["attempt_history"]]
    assert history[0] == AttemptStatus.LOST and history[-1] == AttemptStatus.SUCCEEDED, history
    print(f"\nkill -9 of {unit}: job finished {time.monotonic() - killed:.0f}s after the kill")


def test_poweroff_and_boot_with_jobs_queued_loses_none(vm):
    vm.ssh("systemctl stop trad-worker@1 trad-worker@2")
    job_ids = [start_job(vm, 15, seed=10 + i) for i in range(3)]
    assert all(progress(vm, j)["status"] == JobStatus.QUEUED for j in job_ids)
    vm.poweroff()
    vm.boot()
    for job_id in job_ids:
        assert wait_status(vm, job_id, timeout=300)["status"] == JobStatus.SUCCEEDED


def test_second_deploy_changes_nothing_but_the_restart(vm, deploy):
    before = state_digest(vm)
    result = deploy(label="no-change redeploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_digest(vm) == before
    out = result.stdout
    for step in (
        "user trad: unchanged",
        "env file /etc/trad/trad.env: unchanged",
        "role and database trad: unchanged",
        "Redis already configured",
        "unchanged (already installed)",
        "systemd units: unchanged",
        "enabled units: unchanged",
        "current release: unchanged",
    ):
        assert step in out, step
    assert "created" not in out and "installed into" not in out


def test_broken_release_rolls_back_by_itself(vm, deploy, tmp_path: Path):
    live = vm.ssh("readlink /srv/trad/current").stdout.strip()
    tree = tmp_path / "broken"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    main = tree / "app/api/__main__.py"
    main.write_text(
        main.read_text().replace(
            "def main() -> None:\n", "def main() -> None:\n    raise SystemExit('broken on purpose')\n"
        )
    )
    result = deploy(tree=tree, label="broken deploy")
    assert result.returncode != 0
    assert "rolled back to" in result.stderr, result.stdout + result.stderr
    assert vm.ssh("readlink /srv/trad/current").stdout.strip() == live
    ready = vm.curl("-fsS", "http://127.0.0.1:8000/readyz")
    assert ready.returncode == 0 and json.loads(ready.stdout)["status"] == "ready"
