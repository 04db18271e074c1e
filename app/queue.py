"""RQ transport: which queue a job goes to, putting it there, taking it out, and finding it.

Redis only carries job ids. PostgreSQL holds everything a user may ask about later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import DeserializationError, NoSuchJobError
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
# What a worker may run: every job kind is dispatched through the one entrypoint, which looks
# the kind up in PostgreSQL (app.kinds). A queue entry naming anything else is refused.
ENTRYPOINTS = frozenset({ENTRYPOINT})
RESULT_TTL_S = 60  # RQ's own record is disposable; the truth is in PostgreSQL
FAILURE_TTL_S = 24 * 3600  # how long RQ keeps a failed (or refused) entry for `rq info`


class TradJob(RQJob):
    """RQ's job as trad's queues and workers read it. Whatever an entry in Redis says, only
    the job entrypoint can ever be resolved, and no callback or webhook ever runs: RQ reaches
    these from more places than the job process (the worker's stopped-job handling, and its
    registry cleanup, which calls an abandoned job's failure callback in the worker itself)."""

    @property
    def func(self):
        reason = refusal(self)
        if reason is not None:
            raise RefusedEntry(reason)
        return super().func

    success_callback = failure_callback = stopped_callback = property(lambda self: None)

    def send_webhooks(self, status, *, exc_string=None) -> None:
        return None


class RefusedEntry(Exception):
    """A queue entry that is not trad's was about to be resolved."""


@lru_cache(maxsize=8)
def redis_connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=15)


@lru_cache(maxsize=64)
def get_queue(connection: Redis, priority: str) -> Queue:
    """One Queue object per client and priority: RQ asks the server for its version once per
    Queue object, so a fresh one per enqueue costs an extra round trip."""
    return Queue(QUEUE_NAMES[priority], connection=connection, serializer=JSONSerializer, job_class=TradJob)


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
                failure_ttl=FAILURE_TTL_S,
                at_front=d.at_front,
                description=f"job {d.job_id}",
                pipeline=pipe,
            )
        pipe.execute()


def refusal(job: RQJob) -> str | None:
    """Why a dequeued entry is not one `enqueue` wrote, or None when it is: data (the
    entrypoint, one job id, nothing else), never code. Read from the entry's fields as RQ
    restored them, without resolving any of them: `job.func` and the callback properties
    import what they name, which is what this check exists to prevent."""
    try:
        func_name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return "refused: its data is not JSON of a function call"
    if not isinstance(func_name, str) or func_name not in ENTRYPOINTS:
        allowed = ", ".join(sorted(ENTRYPOINTS))
        return f"refused: function {_short(func_name)} is not a job kind's entrypoint ({allowed})"
    callbacks = {
        "on_success": job._success_callback_name,
        "on_failure": job._failure_callback_name,
        "on_stopped": job._stopped_callback_name,
    }
    named = {k: v for k, v in callbacks.items() if v}
    if named:
        return f"refused: {func_name} with callback(s) {_short(named)}"
    if instance is not None:
        return f"refused: {func_name} called on an object"
    if job._dependency_ids:
        return f"refused: {func_name} with dependencies {_short(job._dependency_ids)}"
    if job.webhooks:
        return f"refused: {func_name} with webhooks"
    if not (isinstance(args, list) and len(args) == 1 and _is_job_id(args[0])) or kwargs:
        return f"refused: {func_name} takes one job id, not args={_short(args)} kwargs={_short(kwargs)}"
    return None


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _is_job_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def remove(connection: Redis, rq_job_id: str, priority: str) -> None:
    """Take a queued dispatch out of Redis (cancel of a queued job). Absent is fine."""
    get_queue(connection, priority).remove(rq_job_id)
    connection.delete(RQJob.key_for(rq_job_id))


def present(connection: Redis, dispatches: Iterable[tuple[str, str]]) -> set[str]:
    """Which of these dispatches (`rq_job_id`, priority) are still somewhere a worker will take
    them from or is running them (see `held_in`): one read per priority asked about, however
    many dispatches are asked about."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for rq_job_id, priority in dispatches:
        wanted[priority].add(rq_job_id)
    found: set[str] = set()
    for priority, ids in wanted.items():
        found |= ids & held_in(connection, priority)
    return found


def held(connection: Redis) -> set[str]:
    """Every dispatch Redis holds, in any priority's queue (see `held_in`): the reconciler's
    one look at Redis per pass, one read per priority. A dispatch id names one job's one trip,
    sent to its job's priority (which never changes), so one set serves every priority."""
    found: set[str] = set()
    for priority in QUEUE_NAMES:
        found |= held_in(connection, priority)
    return found


def held_in(connection: Redis, priority: str) -> set[str]:
    """The dispatches of one priority somewhere a worker will take them from or is running
    them: the queue list, the intermediate list of reliable dequeue, or the started registry.
    A started-registry entry past its expiry (the score RQ gives it) belonged to a worker that
    died: it does not count. One MULTI … EXEC reads the three at once."""
    queue = get_queue(connection, priority)
    pipe = connection.pipeline()
    pipe.lrange(queue.key, 0, -1)
    pipe.lrange(queue.intermediate_queue.key, 0, -1)
    pipe.zrangebyscore(queue.started_job_registry.key, f"({time.time()}", "+inf")
    queued, intermediate, started = pipe.execute()
    # RQ 3 keys started executions as "<job id>:<execution id>".
    return {m.decode() for m in (*queued, *intermediate)} | {m.decode().split(":", 1)[0] for m in started}


def is_present(connection: Redis, rq_job_id: str, priority: str) -> bool:
    """`present` for one dispatch."""
    return rq_job_id in present(connection, [(rq_job_id, priority)])


def forget_started(connection: Redis, rq_job_id: str, priority: str) -> None:
    """Take a dead dispatch out of RQ's started registry (its worker was lost), so `rq info`
    stays true. Gone already is fine."""
    try:
        rq_job = TradJob.fetch(rq_job_id, connection=connection, serializer=JSONSerializer)
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
