"""The API serves the listening socket systemd passes it (trad-api.socket), so a connection made
while it restarts waits for the next process instead of being refused. Here the test holds
the socket, as systemd does, and passes it the way systemd does ($LISTEN_FDS, $LISTEN_PID, fd 3)."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support import ROOT, process_env, stop_process, wait_until

# Puts the socket on fd 3 and names this process (exec keeps its pid) as the one meant.
LAUNCH = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
    "os.execv(sys.executable, [sys.executable, '-m', 'app.api'])"
)


def serve(settings, sock: socket.socket, log: Path) -> subprocess.Popen:
    port = sock.getsockname()[1]
    env = {**process_env(settings), "API_PORT": str(port), "MAINTENANCE_IN_API": "false"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(sock.fileno())],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            pass_fds=(sock.fileno(),),
        )


def healthz(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=60).status_code


def test_connections_made_between_two_api_processes_wait_for_the_second(clean, tmp_path: Path):
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log = tmp_path / "api.log"
    first = serve(clean, sock, log)
    try:
        wait_until(lambda: first.poll() is None and healthz(url) == 200, timeout=30, what="the first API process")
    finally:
        stop_process(first)
    # No process serves the port now; the socket still listens. These connect and wait.
    with ThreadPoolExecutor(8) as pool:
        waiting = [pool.submit(healthz, url) for _ in range(8)]
        second = serve(clean, sock, log)
        try:
            answers = [future.result() for future in waiting]
        finally:
            stop_process(second)
    assert answers == [200] * 8, log.read_text()
    text = log.read_text()
    assert text.count("serving the socket systemd passed") == 2, text
    assert "address already in use" not in text.lower()
    sock.close()
