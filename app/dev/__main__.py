"""`python -m app.dev up` (what `make dev` runs): the whole stack on this machine.

Starts a throwaway PostgreSQL and Redis (AOF on) under ./var/ unless DATABASE_URL / REDIS_URL
point elsewhere, migrates, loads demo candles, starts the API and one worker, writes the
stack's URLs and token to var/dev.env (read by `trad` run from this checkout; see
app/settings.py), prints the token and curl lines, and stops everything it started on Ctrl-C.

As root, PostgreSQL runs as `postgres`; if that user cannot enter the clone (e.g. it lives in
a 0700 home directory) the cluster is kept in /var/tmp/trad-dev-<hash of the clone's path>/.

Stopping: the API and the worker run in sessions of their own, so Ctrl-C reaches only this
process, which sends each one SIGTERM (the worker checkpoints its job), waits STOP_GRACE_S,
then SIGKILLs whatever is left, job processes included, and stops the servers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from app import migrate
from app.db import transaction
from app.dev.servers import PostgresServer, RedisServer, ServerError, server_can_reach, wait_for_port
from app.settings import DEV_ENV_FILE, get_settings

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
DEMO_SYMBOL, DEMO_BARS = "BTCUSDT", 60_000
STOP_GRACE_S = 8.0


def _token() -> str:
    path = VAR / "api_token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def write_dev_env(values: dict[str, str]) -> None:
    """var/dev.env (mode 0600): what `trad` run from this checkout reads to reach this stack."""
    tmp = DEV_ENV_FILE.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# written by `make dev` while its stack is up; removed when it stops\n")
        fh.writelines(f"{key}={value}\n" for key, value in values.items())
    tmp.replace(DEV_ENV_FILE)


def postgres_dir() -> Path:
    """./var/postgres, or a directory outside the clone that the `postgres` user can enter."""
    inside = VAR / "postgres"
    if server_can_reach(inside):
        return inside
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"trad-dev-{digest}" / "postgres"
    print(f"PostgreSQL runs as 'postgres', which cannot enter {ROOT}: its dev cluster is in {outside}")
    return outside


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, found through /proc (a job process has a group of its own)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{current}/task/{current}/children").read_text().split():
                found.append(int(child))
                todo.append(int(child))
    return found


def stop_children(children: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM each child, wait up to `grace_s`, then SIGKILL what is left and below it."""
    below = {c.pid: descendants(c.pid) for c in children}
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        for pid in [child.pid, *below[child.pid], *descendants(child.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child.wait()


def up() -> int:
    VAR.mkdir(exist_ok=True)
    DEV_ENV_FILE.unlink(missing_ok=True)  # left by a stack that was killed: never take it for our settings
    settings = get_settings()
    started: list = []
    overrides: dict[str, str] = {}
    children: list[subprocess.Popen] = []
    try:
        if "database_url" not in settings.model_fields_set:
            pg = PostgresServer(postgres_dir(), port=settings.dev_postgres_port)
            started.append(pg)
            pg.start()
            overrides["DATABASE_URL"] = pg.url
        if "redis_url" not in settings.model_fields_set:
            rs = RedisServer(VAR / "redis", port=settings.dev_redis_port)
            started.append(rs)
            rs.start()
            overrides["REDIS_URL"] = rs.url
        token = settings.api_token_value or _token()
        overrides["API_TOKEN"] = token
        settings = settings.model_copy(update={k.lower(): v for k, v in overrides.items()})
        migrate.upgrade(settings.database_url)
        from app.services.candles import generate_synthetic

        with transaction(settings.database_url) as session:
            report = generate_synthetic(session, DEMO_SYMBOL, "1m", DEMO_BARS, seed=1)
        print(f"demo candles: {DEMO_SYMBOL} 1m, {DEMO_BARS} synthetic bars ({report.inserted} new)")
        write_dev_env({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "API_TOKEN": token})
        env = {**os.environ, **overrides, "PYTHONUNBUFFERED": "1"}
        logs = VAR / "logs"
        logs.mkdir(exist_ok=True)
        for name, argv in (
            ("api", [sys.executable, "-m", "app.api"]),
            ("worker-1", [sys.executable, "worker.py", "--name", "dev-worker-1"]),
        ):
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            children.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        wait_for_port(settings.api_port, 60, children[0])
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"""
trad is up: API {base}, logs in {logs}/ (JSON lines). Ctrl-C stops everything.
`trad` run from this checkout reaches this stack through {DEV_ENV_FILE.relative_to(ROOT)}, e.g. to import a CSV:

  .venv/bin/trad candles import --symbol GOOG --timeframe 1d tests/data/goog_layout.csv

  export TOKEN={token}
  curl -s -X POST {base}/api/v2/training/start -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"strategy":"sma_crossover","symbol":"{DEMO_SYMBOL}","timeframe":"5m","n_iterations":50,"seed":1}}'
  curl -s {base}/api/v2/training/jobs/JOB_ID/progress -H "Authorization: Bearer $TOKEN"
""",
            flush=True,
        )
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("a child process exited; see the logs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping…", flush=True)
        stop_children(children)
        DEV_ENV_FILE.unlink(missing_ok=True)
        for server in reversed(started):
            server.stop()
        print("stopped", flush=True)


def main() -> int:
    if sys.argv[1:] != ["up"]:
        print("usage: python -m app.dev up", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the stack as Ctrl-C does
    try:
        return up()
    except ServerError as exc:
        print(f"cannot start the dev stack: {exc}", file=sys.stderr)
        return 1


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
