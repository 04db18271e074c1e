"""Where a job's time goes in the worker: `smoke` jobs run by one real worker (burst mode),
with timestamps taken at the phases of each job, against throwaway PostgreSQL and Redis.

    .venv/bin/python bench/job_phases.py [--jobs 60]

Prints the median of each phase (parent: fork; job process: RQ's set-up, the claim — which
opens the process's PostgreSQL connection —, the heartbeat's start, the handler, the end of
the attempt, RQ's bookkeeping until exit; parent: the gap to the next job), and per job
process the SQL statements, commits and new PostgreSQL connections. The worker runs with its
methods wrapped to take the timestamps (`--instrumented-worker`, started by the script).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = [
    ("parent_fork", "child_start", "fork, until the job process runs"),
    ("child_start", "run_enter", "job process: RQ's set-up"),
    ("run_enter", "claim_done", "claim (opens the connection)"),
    ("claim_done", "heartbeat_started", "heartbeat thread start"),
    ("heartbeat_started", "handler_done", "handler (smoke: 1 read, 4 progress reports)"),
    ("handler_done", "end_done", "end of the attempt"),
    ("end_done", "child_exit", "job process: RQ's bookkeeping until exit"),
    ("parent_fork", "child_exit", "whole job process, fork to exit"),
]


def instrumented_worker(out: str) -> int:
    """Run worker.py's main with timestamps at each phase, one JSON line per process per job."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    import worker as entry
    from app.execution import heartbeat, runner
    from app.services import dispatch
    from app.worker import TradWorker

    marks: dict[str, float] = {}
    counts = {"sql": 0, "commits": 0, "connections": 0}

    def mark(name: str) -> None:
        marks[name] = time.time()

    def write() -> None:
        with open(out, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), **marks, **counts}) + "\n")

    def wrap(owner, name, before=None, after=None):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            if before:
                before()
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    after()

        setattr(owner, name, wrapped)

    def child_start() -> None:
        marks.clear()
        counts.update(sql=0, commits=0, connections=0)
        mark("child_start")

    wrap(TradWorker, "fork_work_horse", before=lambda: (marks.clear(), mark("parent_fork")))
    wrap(TradWorker, "execute_job", after=lambda: (mark("parent_done"), write()))
    wrap(TradWorker, "setup_work_horse_signals", before=child_start)
    wrap(runner, "_run", before=lambda: mark("run_enter"))
    wrap(runner, "_end", before=lambda: mark("handler_done"), after=lambda: mark("end_done"))
    wrap(heartbeat.Heartbeat, "start", after=lambda: mark("heartbeat_started"))
    original_uow = dispatch.unit_of_work

    @contextlib.contextmanager
    def unit_of_work(*args, **kwargs):
        with original_uow(*args, **kwargs) as uow:
            yield uow
        if "claim_done" not in marks:
            mark("claim_done")

    runner.dispatch.unit_of_work = unit_of_work
    event.listen(Engine, "before_cursor_execute", lambda *a: counts.__setitem__("sql", counts["sql"] + 1))
    event.listen(Engine, "commit", lambda *a: counts.__setitem__("commits", counts["commits"] + 1))
    event.listen(Pool, "connect", lambda *a: counts.__setitem__("connections", counts["connections"] + 1))
    exit_ = os._exit

    def job_process_exit(code: int) -> None:
        if "child_start" in marks:
            mark("child_exit")
            write()
        exit_(code)

    os._exit = job_process_exit
    return entry.main(["--name", "phases", "--burst"])


def report(rows: list[dict]) -> None:
    parents = sorted((r for r in rows if "parent_done" in r), key=lambda r: r["parent_fork"])
    children = sorted((r for r in rows if "child_start" in r), key=lambda r: r["child_start"])
    jobs = [{**p, **c} for p, c in zip(parents, children, strict=False)]
    for start, end, label in PHASES:
        spans = [(j[end] - j[start]) * 1000 for j in jobs if start in j and end in j]
        print(f"  {label:<48} {statistics.median(spans):7.1f} ms")
    gaps = [(b["parent_fork"] - a["parent_done"]) * 1000 for a, b in itertools.pairwise(parents)]
    print(f"  {'worker: end of one job to the next fork':<48} {statistics.median(gaps):7.1f} ms")
    for key in ("sql", "commits", "connections"):
        print(f"  per job process: {key} {statistics.median(c[key] for c in children):g}")
    span = parents[-1]["parent_done"] - parents[0]["parent_fork"]
    print(f"  {len(parents)} jobs in {span:.1f} s: {len(parents) / span:.1f} jobs/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--instrumented-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instrumented_worker:
        return instrumented_worker(args.instrumented_worker)

    from app.queue import redis_connection
    from app.services import dispatch
    from app.services import jobs as jobs_service
    from app.settings import Settings
    from bench.servers import throwaway_servers

    with throwaway_servers("phases") as (base, pg, rs):
        settings = Settings(database_url=pg.url, redis_url=rs.url, api_token="bench", maintenance_in_api=False)
        connection = redis_connection(rs.url)
        for _ in range(args.jobs):
            with dispatch.unit_of_work(settings, connection) as uow:
                jobs_service.start_smoke(uow.session, settings, priority="normal", hashes_per_step=1)
        out = base / "phases.jsonl"
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_URL": rs.url,
            "TRAD_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, str(Path(__file__).resolve()), "--instrumented-worker", str(out)]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True)
        print(f"{args.jobs} smoke jobs, one worker; medians per job:")
        report([json.loads(line) for line in out.read_text().splitlines()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
