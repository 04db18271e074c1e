"""Benchmark the job pipeline with `smoke` jobs: submit → PostgreSQL → Redis → forking worker →
PostgreSQL, with throwaway PostgreSQL and Redis servers started here.

    .venv/bin/python bench/pipeline.py [--jobs 200] [--workers 1 2] [--rounds 3]

Prints, per worker count, throughput and the median / p95 run time of a job (claimed to
succeeded), and as a baseline measured in the same run, plain RQ running a no-op function
(`os.getpid`) with the same forking worker class and serializer and no PostgreSQL bookkeeping.
The baseline's clock runs from its worker's start to its queue running dry; trad's from its
workers' start (their birth in Redis, after imports) to the last job's end, the same span.
Trad's figure from the first submit (submits and the worker processes' start-up included) is
printed beside it. Baseline and trad runs alternate; each trad run is compared with the mean
of the two baselines around it, and the median ratio over the rounds is printed last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from app.db import get_engine, transaction  # noqa: E402
from app.models import Job  # noqa: E402
from app.queue import redis_connection  # noqa: E402
from app.services import dispatch  # noqa: E402
from app.services import jobs as jobs_service  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.status import JobStatus  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402


def run_trad(settings: Settings, env: dict[str, str], n_jobs: int, n_workers: int, log_dir: Path) -> dict:
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(text("TRUNCATE training_jobs CASCADE"))
    Redis.from_url(settings.redis_url).flushall()
    connection = redis_connection(settings.redis_url)
    started = time.monotonic()
    for _ in range(n_jobs):
        with dispatch.unit_of_work(settings, connection) as uow:
            jobs_service.start_smoke(uow.session, settings, priority="normal", hashes_per_step=1)
    procs = [
        subprocess.Popen(
            [sys.executable, "worker.py", "--name", f"bench-{i}"],
            cwd=ROOT,
            env=env,
            stdout=open(log_dir / f"bench-{i}.log", "ab"),  # noqa: SIM115 - owned by the worker
            stderr=subprocess.STDOUT,
        )
        for i in range(n_workers)
    ]
    try:
        while True:
            with transaction(settings.database_url) as session:
                done = session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.SUCCEEDED))
            if done == n_jobs:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        with transaction(settings.database_url) as session:
            runs = [(j.finished_at - j.started_at).total_seconds() for j in session.scalars(select(Job))]
            last_finished = session.scalar(select(func.max(Job.finished_at)))
        births = [w.birth_date for w in Worker.all(connection=connection, serializer=JSONSerializer)]
        working = (last_finished - min(births)).total_seconds()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    return {
        "throughput": n_jobs / elapsed,
        "working_throughput": n_jobs / working,
        "median_run_ms": statistics.median(runs) * 1000,
        "p95_run_ms": statistics.quantiles(runs, n=20)[-1] * 1000,
    }


def run_plain_rq(redis_url: str, n_jobs: int) -> dict:
    connection = Redis.from_url(redis_url)
    connection.flushall()
    queue = Queue("baseline", connection=connection, serializer=JSONSerializer)
    for _ in range(n_jobs):
        queue.enqueue_call("os.getpid", result_ttl=60)
    started = time.monotonic()
    Worker([queue], connection=connection, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    elapsed = time.monotonic() - started
    return {"throughput": n_jobs / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="trad runs per worker count, between baseline runs")
    args = parser.parse_args()
    with throwaway_servers("pipeline") as (base, pg, rs):
        settings = Settings(database_url=pg.url, redis_url=rs.url, api_token="bench", maintenance_in_api=False)
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_URL": rs.url,
            "TRAD_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": "WARNING",
        }
        # Baseline and trad alternate, and each trad run is compared with the mean of the
        # baselines just before and after it: on a shared machine the load drifts by the minute.
        baselines = [run_plain_rq(rs.url, args.jobs)["throughput"]]
        print(f"baseline, plain RQ no-op job, 1 forking worker: {baselines[-1]:.1f} jobs/s")
        ratios: dict[int, list[float]] = {n: [] for n in args.workers}
        for round_ in range(1, args.rounds + 1):
            for n in args.workers:
                r = run_trad(settings, env, args.jobs, n, base)
                baselines.append(run_plain_rq(rs.url, args.jobs)["throughput"])
                anchor = (baselines[-2] + baselines[-1]) / 2
                ratios[n].append(r["working_throughput"] / anchor)
                print(
                    f"round {round_}: trad smoke job, {n} worker(s): {r['working_throughput']:.1f} jobs/s from the "
                    f"workers' start ({ratios[n][-1]:.2f}× the baselines around it, mean {anchor:.1f} jobs/s); "
                    f"{r['throughput']:.1f} jobs/s from the first submit, counting submits and start-up "
                    f"({r['throughput'] / anchor:.2f}×); run time median {r['median_run_ms']:.0f} ms, "
                    f"p95 {r['p95_run_ms']:.0f} ms"
                )
                print(f"baseline, plain RQ no-op job, 1 forking worker: {baselines[-1]:.1f} jobs/s")
        for n, values in ratios.items():
            median = statistics.median(values)
            print(f"trad smoke job, {n} worker(s): median {median:.2f}× plain RQ over {len(values)} rounds")


if __name__ == "__main__":
    main()
