"""Commit, then enqueue. A dispatch is one trip of a job through Redis.

The row records the dispatch id before the transaction commits; the RQ job is sent only after
the commit. If the send fails (Redis down) the row stays `queued` and the reconciler sends it
again later, so an accepted job is never lost.
"""

from __future__ import annotations

import logging
import uuid

from redis import Redis
from redis.exceptions import RedisError

from app import queue
from app.clock import utcnow
from app.kinds import limits
from app.models import Job
from app.settings import Settings

log = logging.getLogger(__name__)


def prepare(job: Job) -> None:
    """Give the (not yet committed) row a fresh dispatch id."""
    job.rq_job_id = f"{job.id}_{uuid.uuid4().hex[:12]}"
    job.enqueued_at = utcnow()


def send(connection: Redis, job: Job, settings: Settings, *, at_front: bool = False) -> bool:
    """Send the committed dispatch to Redis. False when Redis is unreachable. RQ's own
    timeout is the kind's hard timeout plus a minute: the job process's alarm fires first."""
    assert job.rq_job_id is not None
    timeout = limits(settings, job.kind).timeout_s + 60
    try:
        queue.enqueue(connection, str(job.id), job.rq_job_id, job.priority, timeout, at_front=at_front)
    except RedisError as exc:
        log.warning("enqueue deferred to the reconciler: %s", exc, extra={"job_id": str(job.id)})
        return False
    return True
