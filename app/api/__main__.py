"""Run the API: `python -m app.api`. Under systemd (Type=notify) READY is sent once the
socket is listening and PostgreSQL and Redis answer."""

from __future__ import annotations

import logging
import time

import uvicorn
from sqlalchemy import text

from app import logs, notify
from app.api.app import create_app
from app.db import get_engine
from app.queue import redis_connection
from app.settings import Settings, get_settings

log = logging.getLogger("trad.api")


def wait_for_dependencies(settings: Settings, timeout_s: float = 120.0) -> None:
    deadline, delay = time.monotonic() + timeout_s, 0.5
    while True:
        try:
            with get_engine(settings.database_url).connect() as conn:
                conn.execute(text("SELECT 1"))
            redis_connection(settings.redis_url).ping()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"PostgreSQL or Redis not reachable after {timeout_s:.0f}s: {exc}") from exc
            notify.status(f"waiting for PostgreSQL and Redis: {exc}")
            log.warning("waiting for PostgreSQL and Redis: %s", exc)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


class NotifyingServer(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            notify.ready(f"serving on {self.config.host}:{self.config.port}")

    async def shutdown(self, sockets=None) -> None:
        notify.stopping()
        await super().shutdown(sockets)


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_level, process="trad-api")
    wait_for_dependencies(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=True,
        proxy_headers=False,
    )
    NotifyingServer(config).run()


if __name__ == "__main__":
    main()
