"""Run the API: `python -m app.api`. Under systemd (Type=notify) READY is sent once the
socket is listening and PostgreSQL and Redis answer."""

from __future__ import annotations

import logging

import uvicorn

from app import logs, notify
from app.api.app import create_app
from app.readiness import wait_for_dependencies
from app.settings import get_settings

log = logging.getLogger("trad.api")


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
