"""What a maintenance pass costs with many queued jobs, with a throwaway PostgreSQL and Redis.

    .venv/bin/python bench/reconcile.py [--queued 500 1201 10000] [--passes 9]

For each count: that many queued jobs over the three priorities, dispatched a minute ago,
every dispatch in Redis but the newest one's. Prints how many jobs the first pass sent again
(1: the newest, however long the queue) and the median time of the passes after it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app import queue  # noqa: E402
from app.db import session_factory  # noqa: E402
from app.services import maintenance  # noqa: E402
from app.services.maintenance import ReaperGrace  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402

FILL = """
INSERT INTO training_jobs (id, kind, status, priority, params, percent, attempts, max_attempts,
                           rq_job_id, enqueued_at, created_at, updated_at)
SELECT gen_random_uuid(), 'smoke', 'queued', (ARRAY['high', 'normal', 'low'])[1 + i % 3], '{}', 0, 0, 3,
       'd' || i, now() - interval '1 minute', now() - (:n - i) * interval '1 second', now()
FROM generate_series(1, :n) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, nargs="+", default=[500, 1201, 10000])
    parser.add_argument("--passes", type=int, default=9)
    args = parser.parse_args()
    with throwaway_servers("reconcile") as (_, pg, rs):
        settings = Settings(database_url=pg.url, redis_url=rs.url, api_token="b" * 32, maintenance_in_api=False)
        redis = Redis.from_url(rs.url)
        sessions = session_factory(settings.database_url)
        for n in args.queued:
            with sessions() as db:
                db.execute(text("TRUNCATE training_jobs CASCADE"))
                db.execute(text(FILL), {"n": n})
                db.commit()
                rows = db.execute(text("SELECT rq_job_id, priority FROM training_jobs ORDER BY created_at")).all()
            redis.flushdb()
            for priority in queue.QUEUE_NAMES:
                ids = [rq_job_id for rq_job_id, p in rows[:-1] if p == priority]
                if ids:
                    redis.rpush(queue.get_queue(redis, priority).key, *ids)
            ReaperGrace.regained_at = float("-inf")  # no grace period to wait out
            first = maintenance.run_once(settings, redis)
            took = []
            for _ in range(args.passes):
                started = time.perf_counter()
                maintenance.run_once(settings, redis)
                took.append(time.perf_counter() - started)
            print(
                f"{n} queued: first pass sent {len(first.redispatched)} again; "
                f"later passes median {statistics.median(took) * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
