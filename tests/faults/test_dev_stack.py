"""`make dev` from a private copy of the tree: it comes up (as root too, although PostgreSQL
runs as `postgres`, which cannot enter a 0700 directory), `trad` run from the copy with nothing
exported imports a CSV into it through var/dev.env, and an interrupt with a backlog of 200
queued jobs stops everything it started, removes var/dev.env and leaves no process behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.dev.servers import free_port
from tests.support import ROOT, TOKEN, wait_until

pytestmark = pytest.mark.faults

SKIP = shutil.ignore_patterns(".git", ".venv", "var", "__pycache__", ".*_cache", "node_modules")
BACKLOG = 200


def processes_under(*directories: Path) -> list[str]:
    """Processes whose working directory or command line lies under one of `directories`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for directory in directories:
            if cwd.startswith(str(directory)) or str(directory) in cmdline:
                found.append(f"{entry.name} cwd={cwd} {cmdline[:200]}")
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_make_dev_from_a_private_directory_stops_everything_on_interrupt(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    clone = private / "trad"
    shutil.copytree(ROOT, clone, ignore=SKIP)
    api_port, pg_port, redis_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "API_"))}
    env.update(
        {
            "API_PORT": str(api_port),
            "DEV_POSTGRES_PORT": str(pg_port),
            "DEV_REDIS_PORT": str(redis_port),
            "API_TOKEN": TOKEN,
            "TRAD_ENV_FILE": "/nonexistent",
            "PYTHONUNBUFFERED": "1",
        }
    )
    out = clone / "dev.out"
    with open(out, "wb") as sink:
        # Its own process group, as a shell gives a foreground job: the interrupt goes to the group.
        # And SIGINT at its default, as in a terminal: a suite started in the background by a
        # non-interactive shell inherits SIGINT ignored, and so would the stack.
        stack = subprocess.Popen(
            [sys.executable, "-m", "app.dev", "up"],
            cwd=clone,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
    relocated: list[Path] = []
    try:
        wait_until(
            lambda: "trad is up" in out.read_text() or stack.poll() is not None, timeout=180, what="the stack up"
        )
        text = out.read_text()
        assert "trad is up" in text, text[-3000:]
        relocated = [Path(p) for p in re.findall(r"its dev cluster is in (\S+)", text)]
        if os.geteuid() == 0:
            assert relocated, "as root in a 0700 directory, the cluster lives where postgres can enter"

        dev_env = clone / "var" / "dev.env"
        assert stat.S_IMODE(dev_env.stat().st_mode) == 0o600
        assert f"127.0.0.1:{pg_port}/" in dev_env.read_text()
        bare = {k: v for k, v in env.items() if not k.startswith(("DATABASE_", "REDIS_", "API_", "DEV_"))}
        for args in (
            ["candles", "import", "--symbol", "GOOG", "--timeframe", "1d", "tests/data/goog_layout.csv"],
            ["candles", "list"],
        ):
            argv = [sys.executable, "-m", "app.cli", *args]
            cli = subprocess.run(argv, cwd=clone, env=bare, capture_output=True, text=True, timeout=60)
            assert cli.returncode == 0, cli.stderr
        assert "GOOG\t1d\t300\t" in cli.stdout and "BTCUSDT\t1m\t" in cli.stdout, cli.stdout

        http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {TOKEN}"})
        body = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 200}
        for seed in range(BACKLOG):
            assert http.post("/api/v2/training/start", json={**body, "seed": seed}).status_code == 202
        wait_until(
            lambda: http.get("/api/v2/training/jobs", params={"status": "running"}).json()["total"] >= 1,
            timeout=60,
            what="a job running",
        )
        interrupted = time.monotonic()
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C
        code = stack.wait(25)
        took = time.monotonic() - interrupted
        left = processes_under(clone, *relocated)
        assert not left, left
        assert code == 0, out.read_text()[-3000:]
        assert "stopped" in out.read_text()
        assert not dev_env.exists(), "a stopped stack leaves no settings behind"
        worker_log = (clone / "var" / "logs" / "worker-1.log").read_text()
        assert "maintenance pass failed" not in worker_log
        print(f"\nmake dev: stopped {took:.1f}s after Ctrl-C with {BACKLOG} jobs queued; no process left")
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
        for pid_line in processes_under(clone, *relocated):
            os.kill(int(pid_line.split()[0]), signal.SIGKILL)
        for directory in relocated:
            shutil.rmtree(directory.parent, ignore_errors=True)
