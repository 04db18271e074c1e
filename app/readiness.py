"""Start-up readiness: wait until PostgreSQL and Redis answer, telling systemd why we wait."""

from __future__ import annotations

import logging

from sqlalchemy import text

from app import notify
from app.db import get_engine
from app.queue import redis_connection
from app.retry import retry_until
from app.settings import Settings

log = logging.getLogger(__name__)


def check(settings: Settings) -> None:
    """Raise unless both PostgreSQL and Redis answer."""
    with get_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))
    redis_connection(settings.redis_url).ping()


def wait_for_dependencies(settings: Settings, timeout_s: float = 120.0) -> None:
    def waiting(exc: Exception, delay: float) -> None:
        notify.status(f"waiting for PostgreSQL and Redis: {exc}")
        notify.watchdog()
        log.warning("waiting for PostgreSQL and Redis: %s", exc)

    try:
        retry_until(lambda: check(settings), retry_on=(Exception,), budget_s=timeout_s, on_retry=waiting)
    except Exception as exc:
        raise SystemExit(f"PostgreSQL or Redis not reachable after {timeout_s:.0f}s: {exc}") from exc
