"""A client of the deployed service, run on the server itself (stdlib only): 10 requests a
second through nginx (https://localhost) until FILE.stop exists, each in its own thread so a
slow answer does not slow the rate. In turn: GET /healthz, GET a job's progress, POST /start
with an Idempotency-Key that changes every fifth start (so each key is sent five times and must
always name one job). One JSON line per request in FILE: kind, key, status or error, job id.

    python3 poller.py FILE TOKEN_FILE
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE = "https://localhost"
BODY = {
    "strategy": "sma_crossover",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "n_iterations": 2,
    "seed": 1,
    "priority": "low",
}
CONTEXT = ssl.create_default_context(cafile="/etc/trad/tls/trad.crt")


def request(method: str, path: str, token: str, body: dict | None = None, key: str | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key is not None:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=60, context=CONTEXT) as answer:
        return answer.status, json.loads(answer.read() or b"null")


def main() -> None:
    out_path, token = Path(sys.argv[1]), Path(sys.argv[2]).read_text().strip()
    stop = Path(f"{out_path}.stop")
    lock = threading.Lock()
    out = out_path.open("a")
    first_job: list[str] = []

    def record(line: dict) -> None:
        with lock:
            out.write(json.dumps(line) + "\n")
            out.flush()

    def one(n: int) -> None:
        kind = ("healthz", "progress", "start")[n % 3]
        key = f"poller-{n // 15}" if kind == "start" else None
        line = {"n": n, "t": time.time(), "kind": kind, "key": key}
        try:
            if kind == "healthz":
                status, _ = request("GET", "/healthz", token)
            elif kind == "progress" and first_job:
                status, _ = request("GET", f"/api/v2/training/jobs/{first_job[0]}/progress", token)
            elif kind == "progress":
                status, _ = request("GET", "/readyz", token)
            else:
                status, answer = request("POST", "/api/v2/training/start", token, BODY, key)
                line["job_id"] = answer["job_id"]
                first_job[:] = first_job or [answer["job_id"]]
            line["status"] = status
        except urllib.error.HTTPError as exc:
            line["status"] = exc.code
        except Exception as exc:  # every failure is what this records
            line["error"] = f"{type(exc).__name__}: {exc}"
        line["took"] = round(time.time() - line["t"], 3)
        record(line)

    threads = []
    n = 0
    started = time.monotonic()
    while not stop.exists():
        thread = threading.Thread(target=one, args=(n,))
        thread.start()
        threads.append(thread)
        n += 1
        time.sleep(max(0.0, started + n * 0.1 - time.monotonic()))
    for thread in threads:
        thread.join()
    out.close()


if __name__ == "__main__":
    main()
