"""Engine and session factory. One engine per process: a forked job process builds its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

_engines: dict[tuple[int, str], Engine] = {}
_pool = {"pool_size": 5, "max_overflow": 5, "pool_pre_ping": True}


def configure_pool(pool_size: int, max_overflow: int, pre_ping: bool = True) -> None:
    """Size the pools of engines this process creates from now on (the API sizes its own from
    settings; a job process needs one connection and keeps the small default)."""
    _pool.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping)


def sync_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(database_url: str) -> Engine:
    """The engine of this process for that URL. After fork() a child never reuses the
    parent's pooled connections: the key includes the pid. Connections are pinged on checkout
    (one loopback round trip), so the first request after a PostgreSQL restart does not fail on
    a dead pooled connection; `DB_POOL_PRE_PING=false` trades that for speed in the API."""
    key = (os.getpid(), database_url)
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(
            sync_url(database_url),
            **_pool,
            connect_args={"connect_timeout": 5},
        )
        _engines[key] = engine
    return engine


def session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(database_url), expire_on_commit=False)


@contextmanager
def transaction(database_url: str) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with session_factory(database_url)() as session, session.begin():
        yield session


def dispose_process_engines() -> None:
    """Close this process's pooled connections cleanly (a job process calls it before it exits)."""
    pid = os.getpid()
    for key in [k for k in _engines if k[0] == pid]:
        _engines.pop(key).dispose()
