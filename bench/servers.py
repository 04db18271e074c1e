"""Throwaway servers for a benchmark: a PostgreSQL migrated to head and, when asked, a Redis, in
a fresh temporary directory, both stopped and the directory removed when the block ends."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.dev.servers import PostgresServer, RedisServer
from app.migrate import upgrade


@contextlib.contextmanager
def throwaway_servers(name: str, redis: bool = True) -> Iterator[tuple[Path, PostgresServer, RedisServer | None]]:
    """(directory for the benchmark's own files, PostgreSQL, Redis or None)."""
    base = Path(tempfile.mkdtemp(prefix=f"trad-bench-{name}-"))
    pg = PostgresServer(base / "postgres")
    rs = RedisServer(base / "redis") if redis else None
    pg.start()
    try:
        if rs is not None:
            rs.start()
        upgrade(pg.url)
        yield base, pg, rs
    finally:
        if rs is not None:
            rs.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
