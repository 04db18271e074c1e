"""A few autocommit PostgreSQL connections used straight from the event loop.

The progress read, the follow hub's re-reads, the list of jobs and the start are the API's
hottest paths. Through the threadpool and the ORM each cost the API far more CPU than the
statement itself (figures in docs/benchmarks.md); here each is a statement or two sent by the
driver from the event loop: no thread, no session, no statement built per request (compiled once, see
`app/repositories/compiled.py`). The API keeps two pools: reads, and starts (a start can wait on
the admission lock, and must not hold up the reads while it does).

Hand-written rather than psycopg_pool's `AsyncConnectionPool`: while PostgreSQL is down that pool
holds each request for its whole timeout and retries in the background, where the API must
answer 503 at once. Here a request that finds no idle connection connects, and a failed connect
fails that request now, as the SQLAlchemy pool of the other routes does. A connection is checked
when it is taken with the SQLAlchemy pool's own checkout check (`app.db.is_closing`: a poll of
its socket, no round trip). One is given back after an error too, when the error left it idle
outside any transaction (an ordinary 404 or 429, an error the server answered in autocommit);
one left mid-statement, inside a transaction, or broken is closed rather than reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

import psycopg
from psycopg.pq import TransactionStatus
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
                if not _reusable(conn):  # a statement in flight, a transaction open, or broken
                    await _close(conn)
                    raise
                self._idle.append(conn)  # an ordinary answer (404, 409, 422, 429): healthy
                raise
            if _reusable(conn):
                self._idle.append(conn)
            else:
                await _close(conn)
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


def _reusable(conn: psycopg.AsyncConnection) -> bool:
    """Open, and idle outside any transaction: no statement in flight (a request cancelled
    mid-statement leaves one), no transaction left open or failed. An error the server answered
    in autocommit (a constraint, a lock timeout) leaves the connection so; a lost connection
    does not (closed or broken, its status unknown)."""
    return not (conn.closed or conn.broken) and conn.info.transaction_status == TransactionStatus.IDLE


async def _close(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()
