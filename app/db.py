"""Engine and session factory. One engine per process: a forked job process builds its own."""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from psycopg import Error as PsycopgError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_engines: dict[tuple[int, str], Engine] = {}
_autocommit: dict[Engine, sessionmaker[Session]] = {}
_pool = {"pool_size": 5, "max_overflow": 5, "pool_pre_ping": False}


def configure_pool(pool_size: int, max_overflow: int, pre_ping: bool = False) -> None:
    """Size the pools of engines this process creates from now on (the API sizes its own from
    settings; a job process needs one connection and keeps the small default)."""
    _pool.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping)


def sync_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(database_url: str) -> str:
    """A URL for psycopg itself (the follow hub's listener, the read pool) from the SQLAlchemy
    URL the rest of the app uses."""
    return make_url(sync_url(database_url)).set(drivername="postgresql").render_as_string(hide_password=False)


def get_engine(database_url: str) -> Engine:
    """The engine of this process for that URL. After fork() a child never reuses the
    parent's pooled connections: the key includes the pid.

    A pooled connection is checked without a round trip when it is taken from the pool
    (`_replace_if_closed`): one whose server process has gone (a PostgreSQL restart or crash
    ends every backend, which says so on its socket and closes it) is thrown away and replaced, so
    the first request after a restart does not fail. A connection that dies unseen (a network
    gone quiet) fails its statement once, and that error invalidates the whole pool."""
    key = (os.getpid(), database_url)
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(
            sync_url(database_url),
            **_pool,
            connect_args={"connect_timeout": 5},
        )
        event.listen(engine, "checkout", _replace_if_closed)
        _engines[key] = engine
    return engine


def _replace_if_closed(dbapi_connection, connection_record, connection_proxy) -> None:
    """Pool checkout hook: raising DisconnectionError makes the pool discard this connection
    and hand out another (SQLAlchemy's own protocol for a checkout check)."""
    if is_closing(dbapi_connection):
        log.info("a pooled PostgreSQL connection has input while idle (the server closing it); replacing it")
        raise DisconnectionError("pooled connection closed or closing on the server side")


def is_closing(connection) -> bool:
    """An idle psycopg connection (sync or async) that is closed, or whose server process is
    going away: a poll of its socket, no round trip."""
    try:
        return connection.closed or _has_unsolicited_input(connection.pgconn.socket)
    except PsycopgError:  # libpq has no socket for it any more
        return True


def _has_unsolicited_input(fd: int) -> bool:
    """An idle pooled connection has nothing to read, unless its server process is going away:
    it sends why (FATAL: terminating connection), then closes the socket. A poll of the socket,
    not a round trip. (Pooled connections never LISTEN; the rare report of a changed server
    setting also counts, and costs one reconnect.)"""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(database_url), expire_on_commit=False)


def autocommit_session_factory(database_url: str) -> sessionmaker[Session]:
    """Sessions for work that is one statement (a progress read, a page of jobs, a job's
    progress report): in autocommit, so the statement is the only round trip, with no BEGIN
    before it and no COMMIT or ROLLBACK after. One statement is atomic and reads one snapshot
    either way; work of more than one statement belongs in `transaction`."""
    engine = get_engine(database_url)
    maker = _autocommit.get(engine)
    if maker is None:
        maker = _autocommit[engine] = sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
    return maker


@contextmanager
def transaction(database_url: str) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with _closing(session_factory(database_url)(), begin=True) as session:
        yield session


@contextmanager
def autocommit_session(database_url: str) -> Iterator[Session]:
    """A session from `autocommit_session_factory`, closed the way `transaction` closes its own."""
    with _closing(autocommit_session_factory(database_url)(), begin=False) as session:
        yield session


@contextmanager
def _closing(session: Session, *, begin: bool) -> Iterator[Session]:
    """The session for the work, committed (`begin`) and closed after it. When the work raised
    and closing raises too, the work's error is the one that goes up and the session's
    connections are thrown away. That matters in a job process: its hard timeout arrives as an
    exception raised wherever the job is, possibly inside a statement, which leaves the
    connection mid-query, so the rollback that follows fails with an OperationalError. That
    error must never stand in for the interruption (callers retry an OperationalError)."""
    try:
        if begin:
            session.begin()
        yield session
        if begin:
            session.commit()
    except BaseException:
        try:
            session.close()
        except Exception as cleanup:
            log.info("closing the session after an error failed too (%s); discarding its connection", cleanup)
            with suppress(Exception):
                session.invalidate()
        raise
    session.close()


def adopt_parent_engines() -> None:
    """In a forked job process: take over the parent's engines with fresh, empty pools. The
    parent's pooled connections are never used nor closed here (`dispose(close=False)`), and
    the child skips create_engine and the first-connect queries its dialect needs."""
    pid = os.getpid()
    for owner, url in [k for k in _engines if k[0] != pid]:
        engine = _engines.pop((owner, url))
        engine.dispose(close=False)
        _engines.setdefault((pid, url), engine)


def dispose_process_engines() -> None:
    """Close this process's pooled connections cleanly (a job process calls it before it exits)."""
    pid = os.getpid()
    for key in [k for k in _engines if k[0] == pid]:
        _engines.pop(key).dispose()
