"""Facts about the current job process, set by the worker right after fork."""

from __future__ import annotations

import logging
import os
import resource
import threading

from sqlalchemy.exc import SQLAlchemyError

from app.db import adopt_parent_engines, get_engine
from app.execution import signals

log = logging.getLogger(__name__)

worker_name = "worker"
parent_pid = 0


_connecting: threading.Thread | None = None


def enter_job_process(name: str, parent: int, database_url: str) -> None:
    """Right after fork: the job process's identity and signals, the worker's engine with an
    empty pool, and its PostgreSQL connection opened in the background while RQ does its own
    Redis bookkeeping for the job (`connected` waits for it before the first query)."""
    global worker_name, parent_pid, _connecting
    worker_name, parent_pid = name, parent
    signals.install()
    adopt_parent_engines()
    _connecting = threading.Thread(target=_connect, args=(database_url,), name="connect", daemon=True)
    _connecting.start()


def _connect(database_url: str) -> None:
    try:
        with get_engine(database_url).connect():
            pass  # back to the pool, open, for the claim
    except SQLAlchemyError as exc:  # PostgreSQL away: the claim finds out and retries
        log.info("could not connect to PostgreSQL ahead of the claim: %s", exc)


def connected(timeout_s: float = 10.0) -> None:
    """Wait for the connection opened at fork, so the claim uses it instead of opening another."""
    if _connecting is not None:
        _connecting.join(timeout_s)


def parent() -> int:
    return parent_pid or os.getppid()


def limit_memory(extra_mb: int) -> None:
    """Cap this job process's address space at what it inherited plus `extra_mb` (RLIMIT_AS),
    so a runaway job gets MemoryError instead of starving the machine. 0 leaves it unlimited
    (production bounds the whole unit with MemoryMax instead)."""
    if extra_mb <= 0:
        return
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
