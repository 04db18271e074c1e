"""Following a job's progress at the cost of memory, not a thread or a database connection.

One listener per API process holds one PostgreSQL connection with `LISTEN trad_job_changes` (a
trigger on `training_jobs` notifies at every committed change, see migration 0003). For each
followed job the hub keeps the latest progress body; a notification re-reads that job once,
however many follow it, and wakes its followers, a lane of them per turn of the event loop. A
follower is an async generator waiting on its lane's event. If the listener loses its connection
it reconnects and re-reads every followed job, and it re-reads them every `follow_resync_s`
anyway: a lost notification delays a line, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.schemas import Progress
from app.db import libpq_url
from app.loop_pool import LoopPoolTimeout
from app.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "trad_job_changes"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
SSE_KEEPALIVE = b": keep-alive\n\n"
RECONNECT_DELAY_S = 1.0
# A job that reports many times a second is re-read (and its followers written to) at most this
# often: a follower sees every state that lasts, and each change within this plus one read.
READ_INTERVAL_S = 0.5


class TooManyStreams(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def event_id(view: Progress) -> int:
    """The SSE event id of a progress body: its `updated_at` in microseconds since the epoch."""
    return int(view.updated_at.timestamp() * 1_000_000)


def ndjson_line(view: Progress) -> str:
    return view.model_dump_json() + "\n"


def sse_event(view: Progress) -> str:
    return f"id: {event_id(view)}\ndata: {view.model_dump_json()}\n\n"


# Followers of one job are woken in this many lanes, one lane per turn of the event loop, so a
# change for a thousand followers never holds the loop for all of them at once: requests that
# arrive meanwhile wait for one lane's writes at most.
LANES = 16
_wakers: set[asyncio.Task] = set()


def _spawn_waker(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _wakers.add(task)
    task.add_done_callback(_wakers.discard)


class _RunOnceMore:
    """Run `work` now, or, if a run is in flight, once more after it (any number of requests
    meanwhile make one more run). `work` returning False ends the runs (nothing more to do)."""

    def __init__(self, work: Callable[[], Awaitable[bool | None]], spawn: Callable[[Coroutine], Any]) -> None:
        self._work, self._spawn = work, spawn
        self._running = self._again = False

    def request(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        self._spawn(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                if await self._work() is False or not self._again:
                    return
        finally:
            self._running = False


@dataclass(eq=False)
class _Topic:
    """One followed job: its latest body, and per lane an event set (and replaced) when the body
    changes."""

    view: Progress
    followers: int = 0
    joined: int = 0
    lanes: list[asyncio.Event] = field(default_factory=lambda: [asyncio.Event() for _ in range(LANES)])
    reader: _RunOnceMore | None = None  # re-reads the job (set by the hub)
    _text: dict[bool, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._waker = _RunOnceMore(self._wake, _spawn_waker)

    def lane(self) -> int:
        """The lane of a new follower (round robin)."""
        self.joined += 1
        return self.joined % LANES

    def publish(self, view: Progress) -> None:
        if view == self.view:
            return
        self.view, self._text = view, {}
        self._waker.request()  # a waker in progress goes round once more

    async def _wake(self) -> None:
        for i in range(LANES):
            woken, self.lanes[i] = self.lanes[i], asyncio.Event()
            woken.set()
            await asyncio.sleep(0)  # this lane writes; other requests get their turn

    def text(self, sse: bool) -> bytes:
        """The current body as an SSE event or an NDJSON line, serialised once for every follower."""
        if sse not in self._text:
            self._text[sse] = (sse_event(self.view) if sse else ndjson_line(self.view)).encode()
        return self._text[sse]


class FollowResponse(StreamingResponse):
    """A progress stream that gives its slot back however it ends."""

    def __init__(self, content: AsyncIterator[bytes], *, media_type: str, release: Callable[[], None]) -> None:
        super().__init__(content, media_type=media_type, headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class FollowHub:
    """The followers of this API process and the one listener that feeds them."""

    def __init__(self, settings: Settings, read: Callable[[uuid.UUID], Awaitable[Progress | None]]) -> None:
        self.settings = settings
        self._read = read
        self._topics: dict[uuid.UUID, _Topic] = {}
        self._tasks: set[asyncio.Task] = set()
        self._listener: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._open = 0
        self._per_client: Counter[str] = Counter()

    # Admission, like everything below it, runs on the event loop; the lock keeps it safe anywhere.
    def admit(self, client: str) -> Callable[[], None]:
        """Take a stream slot for `client` or raise TooManyStreams; returns the release."""
        s = self.settings
        with self._lock:
            if self._open >= s.follow_max_streams:
                raise TooManyStreams(
                    f"{self._open} progress streams are open on this server (FOLLOW_MAX_STREAMS); try again later"
                )
            if self._per_client[client] >= s.follow_max_streams_per_client:
                raise TooManyStreams(
                    f"this client already has {self._per_client[client]} progress streams open "
                    "(FOLLOW_MAX_STREAMS_PER_CLIENT); close one or read progress without following"
                )
            self._open += 1
            self._per_client[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open -= 1
                self._per_client[client] -= 1
                if self._per_client[client] <= 0:
                    del self._per_client[client]

        return release

    @property
    def open_streams(self) -> int:
        return self._open

    async def follow(
        self,
        job_id: uuid.UUID,
        first: Progress,
        *,
        sse: bool,
        last_event_id: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Lines for one follower: the current body (unless `last_event_id` says the client has
        it), then one per change, keep-alives in between, until the job ends."""
        topic = self._subscribe(job_id, first)
        lane = topic.lane()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.follow_max_s
        try:
            sent = topic.view
            if last_event_id is None or event_id(sent) != last_event_id:
                yield topic.text(sse)
            while not sent.status.is_finished:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                if topic.view is sent:
                    try:
                        async with asyncio.timeout(min(self.settings.follow_keepalive_s, remaining)):
                            while topic.view is sent:  # a lane woken for an older change waits on
                                await topic.lanes[lane].wait()
                    except TimeoutError:
                        pass
                if topic.view is not sent:
                    sent = topic.view
                    yield topic.text(sse)
                else:
                    yield SSE_KEEPALIVE if sse else ndjson_line(sent).encode()
        finally:
            self._unsubscribe(job_id, topic)

    def _subscribe(self, job_id: uuid.UUID, first: Progress) -> _Topic:
        self._ensure_listener()
        topic = self._topics.get(job_id)
        if topic is None:
            topic = self._topics[job_id] = _Topic(first)
            topic.reader = _RunOnceMore(partial(self._read_into, job_id, topic), self._spawn)
            # A change between the route's read and this subscription may have been notified
            # before anyone listened for this job: read it once more.
            self._schedule_read(job_id)
        elif first.updated_at > topic.view.updated_at:
            topic.publish(first)
        topic.followers += 1
        return topic

    def _unsubscribe(self, job_id: uuid.UUID, topic: _Topic) -> None:
        topic.followers -= 1
        if topic.followers <= 0 and self._topics.get(job_id) is topic:
            del self._topics[job_id]

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _schedule_read(self, job_id: uuid.UUID) -> None:
        """Re-read a followed job: one read per job in flight and at most one per READ_INTERVAL_S,
        one more if it was notified meanwhile."""
        topic = self._topics.get(job_id)
        if topic is not None and topic.reader is not None:
            topic.reader.request()

    async def _read_into(self, job_id: uuid.UUID, topic: _Topic) -> bool:
        """One read of the job into its topic, then the pause before the next may start."""
        try:
            view = await self._read(job_id)
        except (psycopg.Error, OSError, LoopPoolTimeout) as exc:
            log.warning("could not read followed job %s: %s", job_id, exc, extra={"job_id": str(job_id)})
            return False
        if view is not None:
            topic.publish(view)
        await asyncio.sleep(READ_INTERVAL_S)
        return True

    def _read_all(self) -> None:
        for job_id in list(self._topics):
            self._schedule_read(job_id)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = self._spawn(self._listen())

    async def _listen(self) -> None:
        conninfo = libpq_url(self.settings.database_url)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._read_all()
                    while True:
                        async for note in conn.notifies(timeout=self.settings.follow_resync_s):
                            try:
                                job_id = uuid.UUID(note.payload)
                            except ValueError:
                                continue
                            if job_id in self._topics:
                                self._schedule_read(job_id)
                        self._read_all()
            except (psycopg.Error, OSError) as exc:
                log.warning("progress listener lost PostgreSQL (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
