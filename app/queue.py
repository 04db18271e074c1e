"""RQ transport: which queue a job goes to, putting it there, taking it out, and finding it.

Redis only carries job ids. PostgreSQL holds everything a user may ask about later.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from app.status import Priority

log = logging.getLogger(__name__)

# Strict priority order: a worker always drains the first queue before the next.
QUEUE_NAMES: dict[str, str] = {
    Priority.HIGH: "training-high",
    Priority.NORMAL: "training",
    Priority.LOW: "training-low",
}
ENTRYPOINT = "app.jobs.run"  # stored in Redis with every job: public API, never rename
RESULT_TTL_S = 60  # RQ's own record is disposable; the truth is in PostgreSQL


@lru_cache(maxsize=8)
def redis_connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=15)


@lru_cache(maxsize=64)
def get_queue(connection: Redis, priority: str) -> Queue:
    """One Queue object per client and priority: RQ asks the server for its version once per
    Queue object, so a fresh one per enqueue costs an extra round trip."""
    return Queue(QUEUE_NAMES[priority], connection=connection, serializer=JSONSerializer)


def all_queues(connection: Redis) -> list[Queue]:
    return [get_queue(connection, p) for p in QUEUE_NAMES]


@dataclass(frozen=True)
class Dispatch:
    """One trip of a job through Redis: `rq_job_id` is unique per dispatch, so a re-dispatch
    never collides with an RQ record of an earlier one."""

    job_id: str
    rq_job_id: str
    priority: str
    timeout_s: int
    at_front: bool = False


def enqueue(connection: Redis, dispatches: list[Dispatch]) -> None:
    """Put dispatches on their queues: one pipelined transaction (MULTI … EXEC), one round trip
    however many there are. All or none."""
    with connection.pipeline() as pipe:
        for d in dispatches:
            get_queue(connection, d.priority).enqueue_call(
                ENTRYPOINT,
                args=[d.job_id],
                job_id=d.rq_job_id,
                timeout=d.timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=24 * 3600,
                at_front=d.at_front,
                description=f"job {d.job_id}",
                pipeline=pipe,
            )
        pipe.execute()


def remove(connection: Redis, rq_job_id: str, priority: str) -> None:
    """Take a queued dispatch out of Redis (cancel of a queued job). Absent is fine."""
    get_queue(connection, priority).remove(rq_job_id)
    connection.delete(RQJob.key_for(rq_job_id))


def present(connection: Redis, dispatches: Iterable[tuple[str, str]]) -> set[str]:
    """Which of these dispatches (`rq_job_id`, priority) are still somewhere a worker will take
    them from or is running them: the queue list, the intermediate list of reliable dequeue, or
    the started registry. A started-registry entry past its expiry (the score RQ gives it)
    belonged to a worker that died: it does not count. One MULTI … EXEC per priority reads the
    three at once, however many dispatches are asked about (the reconciler asks about hundreds
    at a time)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for rq_job_id, priority in dispatches:
        wanted[priority].add(rq_job_id)
    found: set[str] = set()
    for priority, ids in wanted.items():
        queue = get_queue(connection, priority)
        pipe = connection.pipeline()
        pipe.lrange(queue.key, 0, -1)
        pipe.lrange(queue.intermediate_queue.key, 0, -1)
        pipe.zrangebyscore(queue.started_job_registry.key, f"({time.time()}", "+inf")
        queued, intermediate, started = pipe.execute()
        # RQ 3 keys started executions as "<job id>:<execution id>".
        seen = {m.decode() for m in (*queued, *intermediate)} | {m.decode().split(":", 1)[0] for m in started}
        found |= ids & seen
    return found


def is_present(connection: Redis, rq_job_id: str, priority: str) -> bool:
    """`present` for one dispatch."""
    return rq_job_id in present(connection, [(rq_job_id, priority)])


def forget_started(connection: Redis, rq_job_id: str, priority: str) -> None:
    """Take a dead dispatch out of RQ's started registry (its worker was lost), so `rq info`
    stays true. Gone already is fine."""
    try:
        rq_job = RQJob.fetch(rq_job_id, connection=connection, serializer=JSONSerializer)
        get_queue(connection, priority).started_job_registry.remove_executions(rq_job)
    except (NoSuchJobError, RedisError) as exc:
        log.debug("started registry not cleaned for %s: %s", rq_job_id, exc)


def worker_count(connection: Redis) -> int:
    return Worker.count(connection=connection)


# RQ raises this in the job process when its timeout alarm fires.
AttemptInterrupted = JobTimeoutException


def queue_depths(connection: Redis) -> dict[str, int]:
    return {priority: get_queue(connection, priority).count for priority in QUEUE_NAMES}


def registered_workers(connection: Redis) -> list[tuple[str, str | None, str | None]]:
    """(name, state, host) of every worker registered in Redis, sorted by name. The host is the
    one RQ records for the worker at its start (its host name)."""
    workers = Worker.all(connection=connection, serializer=JSONSerializer)
    return sorted((w.name, w.get_state() or None, w.hostname) for w in workers)


def workers_by_host(connection: Redis) -> dict[str, int]:
    """How many workers are registered per host (an unknown host counts as "")."""
    counts: dict[str, int] = {}
    for _, _, host in registered_workers(connection):
        counts[host or ""] = counts.get(host or "", 0) + 1
    return counts
