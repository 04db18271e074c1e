"""Helpers for tests: the test token and timings, the environment of a child process,
polling with a deadline, and worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

TOKEN = "test-token-0123456789"
TEST_TIMINGS = {
    "heartbeat_interval_s": "1",
    "heartbeat_stale_s": "6",
    "maintenance_interval_s": "1",
    "reconcile_grace_s": "1",
    "cancel_poll_s": "0.2",
    "cancel_grace_s": "4",
    "retry_backoff_base_s": "0.5",
    "retry_backoff_max_s": "2",
    "worker_idle_wait_s": "2",
    "db_outage_budget_s": "15",  # 60 s in production: outage tests scale by this ratio
    "stop_budget_s": "3",  # 20 s in production, under the units' TimeoutStopSec=30
}


def process_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "API_"))}
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "API_TOKEN": TOKEN,
            "TRAD_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k.upper(): v for k, v in TEST_TIMINGS.items()})
    return env


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; last value: {last!r}")


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        """SIGKILL the worker and its job process (its own process group)."""
        for pid in (self.proc.pid, *child_pids(self.proc.pid)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def start_worker(
    env: dict[str, str],
    name: str,
    log_dir: Path,
    *extra: str,
    launcher: tuple[str, ...] = (),
    python: str = sys.executable,
) -> WorkerProcess:
    """A real worker process; `launcher` is a command that execs it (e.g. into its own UTS
    namespace); `python` the interpreter of the virtualenv it runs from."""
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [*launcher, python, str(ROOT / "worker.py"), "--name", name, *extra],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return WorkerProcess(name, proc, log_path)


def submit_smoke(db, settings, **params):
    """Commit a smoke job and send it, as an entrypoint does. Returns the job."""
    from app.queue import redis_connection
    from app.services import dispatch
    from app.services import jobs as jobs_service

    job = jobs_service.start_smoke(db, settings, priority="normal", **params)
    assert dispatch.commit_and_send(db, redis_connection(settings.redis_url), settings).sent == [job.id]
    return job


def reset(settings: Settings) -> None:
    """Empty every table and Redis: each test starts clean."""
    from redis import Redis
    from sqlalchemy import text

    from app.db import get_engine

    with get_engine(settings.database_url).begin() as conn:
        conn.execute(
            text(
                "TRUNCATE training_jobs, training_attempts, training_progress, training_trials, "
                "trained_configurations, candles, training_schedules, schedule_fires CASCADE"
            )
        )
    Redis.from_url(settings.redis_url).flushall()


def add_candles_1h(session) -> None:
    """300 synthetic hourly BTCUSDT bars: enough for a 1h training job to be accepted."""
    from app.services import candles as candles_service

    candles_service.generate_synthetic(session, "BTCUSDT", "1h", 300, seed=1)
    session.commit()


def start_body(**overrides):
    """A small real training job: a dozen trials on 3,200 training bars of `load_demo`'s
    candles (a low min_trades keeps the search viable)."""
    body = {
        "strategy": "sma_crossover",
        "symbol": "BTCUSDT",
        "timeframe": "5m",
        "n_iterations": 12,
        "seed": 7,
        "min_trades": 3,
    }
    body.update(overrides)
    return body


def load_demo(db, bars=20_000):
    """Synthetic 1-minute BTCUSDT candles, the training tests' data."""
    from app.services import candles as candles_service

    candles_service.generate_synthetic(db, "BTCUSDT", "1m", bars, seed=3)
    db.commit()


@contextlib.contextmanager
def api_process(
    settings: Settings, log: Path | None = None, python: str = sys.executable, **env_overrides: str
) -> Iterator[str]:
    """The real API as its own process (`python -m app.api`, uvicorn) on a free loopback port,
    with `env_overrides` on top of the settings' environment; yields its base URL. Its output
    goes to `log` when given; `python` is the interpreter of the virtualenv it runs from."""
    from app.dev.servers import free_port, wait_for_port

    port = free_port()
    env = {**process_env(settings), "API_PORT": str(port), "MAINTENANCE_IN_API": "false", **env_overrides}
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([python, "-m", "app.api"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port, 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        if log:
            out.close()


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still running after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
