"""The API of a deployed host, used from the test machine: curl inside the host's network
namespace, with the token read from the host's credentials over SSH."""

from __future__ import annotations

import json

from app.status import JobStatus
from tests.support import wait_until


def secret(vm, name: str) -> str:
    out = vm.ssh(f"cat /etc/trad/credentials/{name}").stdout.strip()
    assert out, name
    return out


def token(vm) -> str:
    return secret(vm, "api_token")


def api(vm, method: str, path: str, body: dict | None = None) -> dict:
    args = ["-X", method, f"http://127.0.0.1:8000{path}", "-H", f"Authorization: Bearer {token(vm)}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    result = vm.curl(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_ready(vm) -> None:
    """The API answers /readyz (starting trad.target returns before its units are ready: they
    are ordered after it, so that stopping it waits for them)."""
    wait_until(
        lambda: vm.curl("-fsS", "http://127.0.0.1:8000/readyz").returncode == 0,
        timeout=180,
        interval=0.5,
        what="the API to be ready",
    )


def start_job(vm, n_iterations: int, seed: int = 1, strategy: str = "sma_crossover", params: dict | None = None) -> str:
    body = {
        "strategy": strategy,
        "symbol": "BTCUSDT",
        "timeframe": "1m",
        "n_iterations": n_iterations,
        "seed": seed,
    }
    if params is not None:
        body["params"] = params
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
