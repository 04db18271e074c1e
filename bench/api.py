"""Benchmark the HTTP API on loopback against bare baselines measured in the same run.

    .venv/bin/python bench/api.py [--duration 5] [--connections 1 8 32] [--followers 1000]
                                  [--fanout-s 15] [--api-env API_PROCESSES=2 ...]

Brings up the stack `make dev` runs (throwaway PostgreSQL and Redis, migrations, the API as
`python -m app.api`, one worker for the fan-out) plus `bench/bare_ping.py` (bare FastAPI `/ping`),
`bench/bare_pg.py` (bare FastAPI + one PostgreSQL read) and `bench/bare_start.py` (bare FastAPI +
one committed INSERT + a plain RQ enqueue). Load comes from `wrk`
(`apt-get install wrk`), bounded by `--duration` per run. Prints requests/s and p50/p99 at each
connection count for healthz, progress, list and start, the ratios to the baselines, then a
fan-out: `--followers` NDJSON streams on one running training job for `--fanout-s` seconds with
/healthz p99 meanwhile, the lag from a progress write (its `updated_at`) to the last follower
seeing it, and the API's RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from app.db import transaction  # noqa: E402
from app.dev.servers import free_port, wait_for_port  # noqa: E402
from app.services.candles import generate_synthetic  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402

START_BODY = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * UNITS[unit]


def wrk(url: str, connections: int, duration: float, token: str, script: Path | None = None) -> dict:
    cmd = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
    cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(pct["50"]) if "50" in pct else float("nan"),
        "p99": _ms(pct["99"]) if "99" in pct else float("nan"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def follow(port: int, path: str, token: str, seen: dict[str, float], ready: asyncio.Event) -> str:
    """One NDJSON follower on a raw connection: records when it first saw each `updated_at`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        status = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if " 200 " not in status:
            return status.strip()
        ready.set()
        buffer = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return "ended"
            buffer += (await reader.readexactly(size + 2))[:-2]
            *lines, buffer = buffer.split(b"\n")
            now = time.time()
            for line in lines:
                body = json.loads(line)
                seen.setdefault(body["updated_at"], now)
                if body["status"] in ("succeeded", "failed", "canceled"):
                    return "ended"
    finally:
        writer.close()


async def fanout(api: str, port: int, token: str, api_pid: int, n: int, seconds: float) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as client:
        body = {
            **START_BODY,
            "timeframe": "1m",
            "n_iterations": 2000,
            "priority": "high",
            "seed": secrets.randbelow(10**9),
        }
        job_id = (await client.post("/api/v2/training/start", json=body)).json()["job_id"]
        path = f"/api/v2/training/jobs/{job_id}/progress"
        deadline = time.monotonic() + 120
        while (await client.get(path)).json()["status"] != "running":
            if time.monotonic() > deadline:
                raise SystemExit("the fan-out job did not start running within 120 s")
            await asyncio.sleep(0.2)
        rss_before = rss_mb(api_pid)
        seen: list[dict[str, float]] = [{} for _ in range(n)]
        ready = [asyncio.Event() for _ in range(n)]
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(follow(port, path + "?follow=true", token, seen[i], ready[i])))
            if i % 50 == 49:
                await asyncio.sleep(0)
        connect_deadline = time.monotonic() + 60
        while not all(e.is_set() for e in ready) and time.monotonic() < connect_deadline:
            if all(t.done() or e.is_set() for t, e in zip(tasks, ready, strict=True)):
                break
            await asyncio.sleep(0.1)
        connected = sum(e.is_set() for e in ready)
        all_joined = time.time()  # changes written after this are owed to every follower
        health: list[float] = []
        unanswered, rss_peak = 0, rss_before
        end = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=api, timeout=10) as probe:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    (await probe.get("/healthz")).raise_for_status()
                    health.append((time.perf_counter() - t0) * 1000)
                except httpx.HTTPError:
                    unanswered += 1
                rss_peak = max(rss_peak, rss_mb(api_pid))
                await asyncio.sleep(0.05)
        try:
            await client.delete(f"/api/v2/training/jobs/{job_id}")
        except httpx.HTTPError as exc:
            print(f"  (the cancel of the fan-out job was not answered: {exc!r})")
        done, pending = await asyncio.wait(tasks, timeout=60)
        for task in pending:
            task.cancel()
    # Lag of each change written once every follower had joined: from its write (updated_at) to
    # the last follower that saw it. Followers get the latest state, so a state replaced within
    # the hub's read interval may be skipped; `coverage` is the share of followers that saw one.
    writes: dict[str, list[float]] = {}
    for follower in seen:
        for updated_at, at in follower.items():
            if datetime.fromisoformat(updated_at).timestamp() > all_joined:
                writes.setdefault(updated_at, []).append(at)
    lags = sorted(max(ats) - datetime.fromisoformat(u).timestamp() for u, ats in writes.items())
    coverage = sorted(len(ats) / max(connected, 1) for ats in writes.values())
    seen_by_all = sum(1 for c in coverage if c >= 1.0)
    return {
        "followers": n,
        "connected": connected,
        "ended_with_job": sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result() == "ended"),
        "healthz_p50": statistics.median(health) if health else float("nan"),
        "healthz_p99": statistics.quantiles(health, n=100)[98] if len(health) > 2 else float("nan"),
        "healthz_unanswered": unanswered,
        "changes": len(lags),
        "lag_p50_ms": statistics.median(lags) * 1000 if lags else float("nan"),
        "lag_max_ms": lags[-1] * 1000 if lags else float("nan"),
        "min_coverage": coverage[0] if coverage else 0.0,
        "seen_by_all": seen_by_all,
        "rss_growth_mb": rss_peak - rss_before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--fanout-s", type=float, default=15.0)
    parser.add_argument("--fanout-only", action="store_true", help="skip the wrk runs")
    parser.add_argument("--api-env", nargs="*", default=[], help="extra KEY=VALUE settings for the API")
    parser.add_argument(
        "--only", nargs="+", choices=["healthz", "progress", "list", "start"], help="only these (and their baselines)"
    )
    args = parser.parse_args()

    with throwaway_servers("api") as (base, pg, rs):
        procs: list[subprocess.Popen] = []
        try:
            with transaction(pg.url) as session:
                generate_synthetic(session, "BTCUSDT", "1m", 60_000, seed=2)
                generate_synthetic(session, "BTCUSDT", "1h", 2_000, seed=3)
            token = secrets.token_urlsafe(24)
            port, ping_port, pg_port, start_port = free_port(), free_port(), free_port(), free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "API_"))}
            env.update(
                DATABASE_URL=pg.url,
                REDIS_URL=rs.url,
                API_TOKEN=token,
                API_PORT=str(port),
                TRAD_ENV_FILE="/nonexistent",
                MAX_QUEUED_JOBS="10000000",
                PYTHONUNBUFFERED="1",
            )
            env.update(dict(kv.split("=", 1) for kv in args.api_env))
            api_proc = spawn([sys.executable, "-m", "app.api"], env, base / "api.log")
            procs.append(api_proc)
            procs.append(spawn([sys.executable, "bench/bare_ping.py", str(ping_port)], env, base / "ping.log"))
            procs.append(spawn([sys.executable, "bench/bare_pg.py", str(pg_port), pg.url], env, base / "pg.log"))
            bare_start = [sys.executable, "bench/bare_start.py", str(start_port), pg.url, rs.url]
            procs.append(spawn(bare_start, env, base / "start.log"))
            for p, proc in ((port, api_proc), (ping_port, procs[1]), (pg_port, procs[2]), (start_port, procs[3])):
                wait_for_port(p, 60, proc)
            api = f"http://127.0.0.1:{port}"
            http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            ids = [
                http.post("/api/v2/training/start", json={**START_BODY, "seed": i}).json()["job_id"] for i in range(200)
            ]
            job_id = ids[0]
            script = base / "start.lua"
            script.write_text(
                'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = '{json.dumps(START_BODY)}'\n"
            )
            targets = {
                "bare /ping": (f"http://127.0.0.1:{ping_port}/ping", None),
                "bare + PG read": (f"http://127.0.0.1:{pg_port}/jobs/{job_id}", None),
                "bare start": (f"http://127.0.0.1:{start_port}/start", script),
                "healthz": (f"{api}/healthz", None),
                "progress": (f"{api}/api/v2/training/jobs/{job_id}/progress", None),
                "list (50)": (f"{api}/api/v2/training/jobs?limit=50", None),
                "start": (f"{api}/api/v2/training/start", script),
            }
            print(f"API settings: {' '.join(args.api_env) or 'defaults'}; wrk {args.duration:g} s per run")
            print(f"{'request':<16}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'vs bare':>9}")
            results: dict[tuple[str, int], dict] = {}
            baselines = {"bare /ping": ("healthz",), "bare + PG read": ("progress", "list"), "bare start": ("start",)}
            chosen = [
                n
                for n in targets
                if not args.only or n.split()[0] in args.only or set(baselines.get(n, ())) & set(args.only)
            ]
            for name in chosen if not args.fanout_only else ():
                url, lua = targets[name]
                for c in args.connections:
                    r = results[name, c] = wrk(url, c, args.duration, token, lua)
                    anchor = {"progress": "bare + PG read", "list (50)": "bare + PG read", "start": "bare start"}.get(
                        name, "bare /ping"
                    )
                    ratio = r["rps"] / results[anchor, c]["rps"] if name not in baselines else 1
                    print(
                        f"{name:<16}{c:>6}{r['rps']:>10.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
                        f"{r['non_2xx'] + r['socket_errors']:>9}{ratio:>8.2f}x"
                    )
            if args.followers:
                procs.append(spawn([sys.executable, "worker.py", "--name", "bench-fanout"], env, base / "worker.log"))
                f = asyncio.run(fanout(api, port, token, api_proc.pid, args.followers, args.fanout_s))
                print(
                    f"\nfan-out: {f['followers']} followers ({f['connected']} connected, {f['ended_with_job']} saw the "
                    f"job end) for {args.fanout_s:g} s on one running job\n"
                    f"  /healthz meanwhile: p50 {f['healthz_p50']:.1f} ms, p99 {f['healthz_p99']:.1f} ms, "
                    f"{f['healthz_unanswered']} unanswered within 10 s\n"
                    f"  {f['changes']} changes written after all joined, {f['seen_by_all']} seen by every follower; "
                    f"lag from write to the last follower: p50 {f['lag_p50_ms']:.0f} ms, max {f['lag_max_ms']:.0f} ms; "
                    f"smallest share of followers that saw a change {f['min_coverage']:.0%}\n"
                    f"  API RSS growth: {f['rss_growth_mb']:.1f} MB"
                )
            return 0
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
