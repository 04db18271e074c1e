"""Throwaway PostgreSQL and Redis servers in a directory of their own.

Used by the local stack (`make dev`) and by the test suite, which also kills and restarts them
to inject faults. Only the server binaries are needed; nothing is installed system-wide.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _stop(proc: subprocess.Popen | None, sig: signal.Signals, timeout: float) -> bool:
    """Signal a server and wait for it (SIGKILL after `timeout`). False if it was not running."""
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


def postgres_bindir() -> Path:
    """Directory holding initdb and postgres: Debian keeps them out of PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for directory in reversed(candidates):
        if (Path(directory) / "postgres").exists():
            return Path(directory)
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise ServerError("PostgreSQL server binaries not found: apt-get install postgresql")


def _run_as() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: use the `postgres` system user then."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerError("running as root needs a 'postgres' user (apt-get install postgresql)") from exc
    return entry.pw_uid, entry.pw_gid


def reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether that user may enter every directory from / down to `path` (search permission)."""
    name = pwd.getpwuid(uid).pw_name
    groups = set(os.getgrouplist(name, gid))
    for directory in (*reversed(path.parents), path):
        if not directory.exists():
            break
        st = directory.stat()
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def server_can_reach(path: Path) -> bool:
    """Whether PostgreSQL, which runs as `postgres` when we are root, can use `path`'s parent."""
    ids = _run_as()
    return ids is None or reachable_by(path.parent, *ids)


def _demote(ids: tuple[int, int] | None):
    if ids is None:
        return None

    def _set() -> None:
        os.setgid(ids[1])
        os.setuid(ids[0])

    return _set


@dataclass
class PostgresServer:
    """A PostgreSQL cluster under `directory`, listening on 127.0.0.1:`port`, trust auth."""

    directory: Path
    port: int = field(default_factory=free_port)
    database: str = "trad"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://trad@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def init(self) -> None:
        ids = _run_as()
        self.directory.mkdir(parents=True, exist_ok=True)
        if ids:
            os.chown(self.directory, *ids)
            parent = self.directory.parent  # a private temp dir must let the server user through
            os.chmod(parent, parent.stat().st_mode | 0o711)
            if not reachable_by(self.directory, *ids):
                raise ServerError(
                    f"PostgreSQL runs as the 'postgres' user, which cannot enter {self.directory} "
                    "(a parent directory is private); put the cluster elsewhere or set DATABASE_URL"
                )
        if (self.data_dir / "PG_VERSION").exists():
            return
        bindir = postgres_bindir()
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "trad",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=_demote(ids),
            cwd=self.directory,  # the server user may not be able to enter ours
        )

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        ids = _run_as()
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - owned by the server process
        self.proc = subprocess.Popen(
            [
                str(postgres_bindir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.directory}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=_demote(ids),
            start_new_session=True,
            cwd=self.directory,
        )
        wait_for_port(self.port, timeout, self.proc)
        self._wait_ready(timeout)
        self._create_database()

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user="trad", dbname="postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="trad", dbname="postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown; SIGKILL simulates a crash."""
        if not _stop(self.proc, sig, timeout):
            return
        if sig == signal.SIGKILL:  # children of a crashed postmaster must go too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class RedisServer:
    """A redis-server under `directory` with AOF on, listening on 127.0.0.1:`port`."""

    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    config: str | None = None  # extra redis.conf text (users, ACL rules), written beside the data
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise ServerError("redis-server not found: apt-get install redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [binary]
        if self.config is not None:
            conf = self.directory / "redis.conf"
            conf.write_text(self.config)
            args.append(str(conf))
        args += [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, timeout, self.proc)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        _stop(self.proc, sig, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()
