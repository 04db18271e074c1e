"""A few autocommit PostgreSQL connections used straight from the event loop.

The progress read, the follow hub's re-reads, the list of jobs and the start are the API's
hottest paths. Through the threadpool and the ORM a progress read cost about a millisecond of
the API's CPU and a start about ten; here each is a statement or two sent by the driver from the
event loop: no thread, no session, no statement built per request (compiled once, see
`app/repositories/compiled.py`). The API keeps two pools: reads, and starts (a start can wait on
the admission lock, and must not hold up the reads while it does).

Hand-written rather than psycopg_pool's `AsyncConnectionPool`: while PostgreSQL is down that pool
holds each request for its whole timeout and retries in the background, where the API must
answer 503 at once. Here a request that finds no idle connection connects, and a failed connect
fails that request now, as the SQLAlchemy pool of the other routes does. A connection is checked
when it is taken with the SQLAlchemy pool's own checkout check (`app.db.is_closing`: a poll of
its socket, no round trip), and one that saw any error is closed rather than reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

import psycopg
from psycopg.rows import namedtuple_row

from app.db import is_closing, libpq_url

log = logging.getLogger(__name__)


class LoopPoolTimeout(Exception):
    """No connection came free within the pool's timeout (PostgreSQL hung, or the API is
    flooded): the API answers 503."""


class LoopPool:
    def __init__(self, database_url: str, size: int, *, timeout_s: float = 30.0, connect_timeout_s: int = 5) -> None:
        self._conninfo = libpq_url(database_url)
        self._size = size
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._idle: deque[psycopg.AsyncConnection] = deque()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """An autocommit connection whose rows are named tuples, for one statement or a few."""
        slots = self._slots_of_this_loop()
        try:
            await asyncio.wait_for(slots.acquire(), self._timeout_s)
        except TimeoutError:
            raise LoopPoolTimeout(f"no PostgreSQL connection free within {self._timeout_s:g}s") from None
        try:
            conn = await self._take_idle() or await self._connect()
            try:
                yield conn
            except BaseException:
                await _close(conn)  # its state is unknown: never reuse it
                raise
            if conn.closed or conn.broken:
                return
            self._idle.append(conn)
        finally:
            slots.release()

    async def close(self) -> None:
        while self._idle:
            await _close(self._idle.popleft())

    def _slots_of_this_loop(self) -> asyncio.Semaphore:
        """Connections belong to the event loop that opened them; a new loop (a test client's)
        starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._slots = loop, asyncio.Semaphore(self._size)
            self._idle.clear()  # the old loop's sockets are closed when they are collected
        return self._slots

    async def _take_idle(self) -> psycopg.AsyncConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if not is_closing(conn):
                return conn
            log.info("an idle read connection has input while idle (the server closing it); replacing it")
            await _close(conn)
        return None

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout_s, row_factory=namedtuple_row
        )


async def _close(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()
