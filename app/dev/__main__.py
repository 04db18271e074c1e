"""`python -m app.dev up` (what `make dev` runs): the whole stack on this machine.

Starts a throwaway PostgreSQL and Redis (AOF on) under ./var/ unless DATABASE_URL / REDIS_URL
point elsewhere, migrates, loads demo candles, starts the API and one worker, prints the
token and curl lines, and stops everything it started on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from app import migrate
from app.db import transaction
from app.dev.services import PostgresServer, RedisServer, wait_for_port
from app.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
DEMO_SYMBOL, DEMO_BARS = "BTCUSDT", 60_000


def _token() -> str:
    path = VAR / "api_token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def up() -> int:
    VAR.mkdir(exist_ok=True)
    settings = get_settings()
    started: list = []
    overrides: dict[str, str] = {}
    if "database_url" not in settings.model_fields_set:
        pg = PostgresServer(VAR / "postgres", port=55432)
        pg.start()
        started.append(pg)
        overrides["DATABASE_URL"] = pg.url
    if "redis_url" not in settings.model_fields_set:
        rs = RedisServer(VAR / "redis", port=56379)
        rs.start()
        started.append(rs)
        overrides["REDIS_URL"] = rs.url
    token = settings.api_token_value or _token()
    overrides["API_TOKEN"] = token
    settings = settings.model_copy(update={k.lower(): v for k, v in overrides.items()})
    children: list[subprocess.Popen] = []
    try:
        migrate.upgrade(settings.database_url)
        from app.services.candles import generate_synthetic

        with transaction(settings.database_url) as session:
            report = generate_synthetic(session, DEMO_SYMBOL, "1m", DEMO_BARS, seed=1)
        print(f"demo candles: {DEMO_SYMBOL} 1m, {DEMO_BARS} synthetic bars ({report.inserted} new)")
        env = {**os.environ, **overrides, "PYTHONUNBUFFERED": "1"}
        logs = VAR / "logs"
        logs.mkdir(exist_ok=True)
        for name, argv in (
            ("api", [sys.executable, "-m", "app.api"]),
            ("worker-1", [sys.executable, "worker.py", "--name", "dev-worker-1"]),
        ):
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            children.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(settings.api_port, 60, children[0])
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(f"""
trad is up: API {base}, logs in {logs}/ (JSON lines). Ctrl-C stops everything.

  export TOKEN={token}
  curl -s -X POST {base}/api/v2/training/start -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"strategy":"sma_crossover","symbol":"{DEMO_SYMBOL}","timeframe":"5m","n_iterations":50,"seed":1}}'
  curl -s {base}/api/v2/training/jobs/JOB_ID/progress -H "Authorization: Bearer $TOKEN"
""")
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("a child process exited; see the logs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(started):
            server.stop()


def main() -> int:
    if sys.argv[1:] != ["up"]:
        print("usage: python -m app.dev up", file=sys.stderr)
        return 2
    return up()


if __name__ == "__main__":
    sys.exit(main())
