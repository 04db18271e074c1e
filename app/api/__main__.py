"""Run the API: `python -m app.api`. Under systemd (Type=notify) READY is sent once the
socket is listening and PostgreSQL and Redis answer. Given a listening socket by systemd
(trad-api.socket), it serves that one instead of binding API_HOST:API_PORT: the socket outlives
the process, so connections made while the API restarts wait for the new process instead of
being refused."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from app import logs, notify
from app.api.app import create_app
from app.readiness import wait_for_dependencies
from app.settings import Settings, get_settings, inherited_sockets

log = logging.getLogger("trad.api")
# At a stop, connections accepted a moment ago get this long to send their request before
# uvicorn closes the ones that sent none (nginx sends its request right after connecting).
ACCEPTED_GRACE_S = 0.2


class NotifyingServer(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            notify.ready(f"serving on {self.config.host}:{self.config.port}")

    async def shutdown(self, sockets=None) -> None:
        notify.stopping()
        # Stop accepting first: what is still in the backlog waits for the next process (with
        # systemd's socket); a request already accepted is answered by this one.
        for server in self.servers:
            server.close()
        await asyncio.sleep(ACCEPTED_GRACE_S)
        await super().shutdown(sockets)


def raise_open_files_limit() -> None:
    """Every progress stream is an open socket: lift the soft descriptor limit (1024 under
    systemd by default) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proxy(settings: Settings) -> dict:
    """Believe X-Forwarded-For and X-Forwarded-Proto from the trusted proxies only (nginx on
    loopback): the client address then counts streams per client, and redirects keep the
    proxy's https scheme. uvicorn takes the last address in X-Forwarded-For that is not a
    trusted proxy; the deployed nginx sets the header to its peer's address alone."""
    trusted = settings.trusted_proxies
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


def build_app() -> FastAPI:
    """The app of one of several API processes (API_PROCESSES > 1): uvicorn imports it by name."""
    settings = get_settings()
    logs.configure(settings.log_level, process="trad-api")
    return create_app(settings)


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd holds for the API, if it passed one."""
    fds = inherited_sockets()
    if not fds:
        return None
    sock = socket.socket(fileno=fds[0])
    log.info("serving the socket systemd passed: %s", sock.getsockname())
    return sock


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_level, process="trad-api")
    raise_open_files_limit()
    inherited = inherited_socket()
    wait_for_dependencies(settings)
    common = dict(host=settings.api_host, port=settings.api_port, log_config=None, access_log=True, **proxy(settings))
    if settings.api_processes == 1:
        NotifyingServer(uvicorn.Config(create_app(settings), **common)).run(sockets=[inherited] if inherited else None)
        return
    # Several processes accept on one socket the supervisor binds (or systemd passed); it is
    # listening from here on.
    config = uvicorn.Config("app.api.__main__:build_app", factory=True, workers=settings.api_processes, **common)
    sockets = [inherited or config.bind_socket()]
    notify.ready(f"serving on {settings.api_host}:{settings.api_port} with {settings.api_processes} processes")
    try:
        Multiprocess(config, sockets=sockets).run()
    finally:
        notify.stopping()


if __name__ == "__main__":
    main()
