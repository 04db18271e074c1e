"""Commit, then send. A dispatch is one trip of a job through Redis.

A transition that needs Redis (a job queued, re-queued or canceled while queued) records it in
the session's outbox: the row gets its dispatch id before the transaction commits, and the
outbox is sent only after the commit (`commit_and_send`, or `unit_of_work` around a block; on the
event loop `LoopSender.unit_of_work`, whose connection commits each write itself).
If a send fails (Redis down) the row stays `queued` and the reconciler sends it again later,
so an accepted job is never lost; a withdrawal that fails is harmless, since no worker runs a
job that is not queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from psycopg import AsyncConnection
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from app import queue
from app.clock import utcnow
from app.db import session_factory
from app.kinds import limits
from app.models import Job
from app.settings import Settings

log = logging.getLogger(__name__)
_OUTBOX = "trad.outbox"


@dataclass(frozen=True)
class _Send:
    job: Job
    at_front: bool


@dataclass(frozen=True)
class _Withdraw:
    rq_job_id: str
    priority: str


@dataclass
class Delivery:
    sent: list[uuid.UUID] = field(default_factory=list)
    deferred: list[uuid.UUID] = field(default_factory=list)  # left to the reconciler

    @property
    def complete(self) -> bool:
        return not self.deferred


def _outbox(session: Session) -> list[_Send | _Withdraw]:
    return session.info.setdefault(_OUTBOX, [])


def prepare(session: Session, job: Job, *, at_front: bool = False) -> None:
    """Give the (not yet committed) row a fresh dispatch id and send it after commit."""
    assign(job)
    send_after_commit(session, job, at_front=at_front)


def assign(job: Job) -> None:
    """A fresh dispatch id on the job, before its row is written (`prepare` without the send)."""
    job.rq_job_id = f"{job.id}_{uuid.uuid4().hex[:12]}"
    job.enqueued_at = utcnow()


def send_after_commit(session: Session, job: Job, *, at_front: bool = False) -> None:
    """Send the job's dispatch (see `assign`) once the session commits."""
    _outbox(session).append(_Send(job, at_front))


def withdraw(session: Session, job: Job) -> None:
    """Take the job's dispatch out of Redis after commit (cancel of a queued job)."""
    if job.rq_job_id:
        _outbox(session).append(_Withdraw(job.rq_job_id, job.priority))


def discard(session: Session) -> None:
    """Forget what the session would have sent (its transaction was rolled back)."""
    session.info.pop(_OUTBOX, None)


def commit_and_send(session: Session, connection: Redis, settings: Settings) -> Delivery:
    """The unit of work's end: commit, then send what the committed transitions recorded."""
    session.commit()
    return send_outbox(session, connection, settings)


def send_outbox(session: Session, connection: Redis, settings: Settings) -> Delivery:
    """Withdrawals one by one (rare: a cancel), then every send in one Redis round trip."""
    delivery, sends = Delivery(), []
    for item in session.info.pop(_OUTBOX, []):
        if isinstance(item, _Withdraw):
            with contextlib.suppress(RedisError):
                queue.remove(connection, item.rq_job_id, item.priority)
        elif inspect(item.job).persistent:  # else its insert was rolled back
            sends.append(item)
    if sends:
        jobs = [item.job for item in sends]
        ok = send(connection, jobs, settings, at_front=[item.at_front for item in sends])
        (delivery.sent if ok else delivery.deferred).extend(job.id for job in jobs)
    return delivery


@dataclass
class UnitOfWork:
    session: Session
    delivery: Delivery = field(default_factory=Delivery)  # filled in when the block ends


@contextmanager
def unit_of_work(settings: Settings, connection: Redis | None = None) -> Iterator[UnitOfWork]:
    """A session whose work is committed, then sent, when the block ends; rolled back (and
    nothing sent) if it raises. For entrypoints without a request session: the CLI, the job
    process, maintenance, tests and benchmarks."""
    with session_factory(settings.database_url)() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
        except BaseException:
            session.rollback()
            discard(session)
            raise
        uow.delivery = commit_and_send(session, connection or queue.redis_connection(settings.redis_url), settings)


def send(connection: Redis, jobs: list[Job], settings: Settings, *, at_front: list[bool] | None = None) -> bool:
    """Send committed dispatches to Redis in one round trip. False when Redis is unreachable
    (none was sent; the reconciler sends them later). RQ's own timeout is the kind's hard
    timeout plus a minute: the job process's alarm fires first."""
    fronts = at_front or [False] * len(jobs)
    dispatches = []
    for job, front in zip(jobs, fronts, strict=True):
        assert job.rq_job_id is not None
        timeout = limits(settings, job.kind).timeout_s + 60
        dispatches.append(queue.Dispatch(str(job.id), job.rq_job_id, job.priority, timeout, at_front=front))
    try:
        queue.enqueue(connection, dispatches)
    except RedisError as exc:
        for job in jobs:
            log.warning("enqueue deferred to the reconciler: %s", exc, extra={"job_id": str(job.id)})
        return False
    return True


@dataclass
class LoopWork:
    """An event-loop unit of work (`LoopSender.unit_of_work`): an autocommit connection, and the
    outbox of the jobs whose dispatch is sent when the block ends."""

    conn: AsyncConnection
    outbox: list[Job] = field(default_factory=list)


class LoopSender:
    """`send` for the event loop's starts: the dispatches of requests that arrive while a send is
    under way go out together in the next one (one thread hop and one MULTI … EXEC for all of
    them), so under load a start costs a share of a round trip. Each caller still waits for its
    own dispatch: True if it was sent, False if Redis was unreachable (the reconciler sends it)."""

    def __init__(self, connection: Redis) -> None:
        self._connection = connection
        self._settings: Settings | None = None
        self._pending: list[tuple[Job, asyncio.Future[bool]]] = []
        self._task: asyncio.Task | None = None

    @asynccontextmanager
    async def unit_of_work(
        self, connection: AbstractAsyncContextManager[AsyncConnection], settings: Settings
    ) -> AsyncIterator[LoopWork]:
        """`unit_of_work` for the event loop: a connection (each write commits itself), returned
        before anything is sent; then the outbox's dispatches are sent, unless the block raised."""
        async with connection as conn:
            work = LoopWork(conn)
            yield work
        for job in work.outbox:
            await self.send(job, settings)

    async def send(self, job: Job, settings: Settings) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._settings = settings  # the API's current settings (RQ's timeout is the kind's limit)
        self._pending.append((job, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_pending())
        return await future

    async def _send_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                jobs, settings = [job for job, _ in batch], self._settings
                assert settings is not None
                ok = await asyncio.to_thread(send, self._connection, jobs, settings)
            except BaseException as exc:  # not Redis (`send` absorbs that): each caller gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(ok)
