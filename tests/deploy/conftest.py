"""Fixtures for the deploy tests: a booted Debian 12 container (module scope) and a deploy runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.container import Container, rootfs_tarball
from tests.deploy.network import PrivateNetwork
from tests.support import ROOT

NEEDED = ("systemd-nspawn", "debootstrap", "nsenter", "nc", "ssh", "ssh-keygen")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: deploys to a real Debian 12 with systemd in a container")


def containers_possible() -> None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install systemd-container debootstrap netcat-openbsd)")
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root")


@pytest.fixture(scope="module")
def vm() -> Iterator[Container]:
    containers_possible()
    tarball = rootfs_tarball()
    container = Container(Path(tempfile.mkdtemp(prefix="trad-vm-")))
    container.prepare(tarball)
    container.boot()
    yield container
    container.destroy()


class Deployer:
    def __init__(self, vm: Container) -> None:
        self.vm = vm
        self.timings: dict[str, float] = {}

    def __call__(
        self, tree: Path = ROOT, workers: int | None = 2, label: str = "deploy"
    ) -> subprocess.CompletedProcess:
        """`workers=None` leaves WORKERS unset: the server keeps its workers (2 on a first install)."""
        env = {**os.environ, "SERVER": "trad-vm", "SSH_OPTS": f"-F {self.vm.ssh_config}"}
        env.pop("WORKERS", None)
        if workers is not None:
            env["WORKERS"] = str(workers)
        started = time.monotonic()
        result = subprocess.run(
            ["bash", str(tree / "ops/scripts/deploy_to_server.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.timings[label] = time.monotonic() - started
        print(f"\n{label}: {self.timings[label]:.1f}s (exit {result.returncode})")
        return result


@pytest.fixture(scope="module")
def deploy(vm: Container) -> Deployer:
    return Deployer(vm)


HOST_ADDRESSES = {"primary": "10.89.0.1", "worker": "10.89.0.2"}
HOST_NAMES = {"primary": "trad-primary", "worker": "trad-node2"}


class TwoHosts:
    """A primary and a worker host, each a booted Debian 12 container in its own namespace of
    one private network (10.89.0.0/24), with one ssh_config naming both."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.net = PrivateNetwork(dict(HOST_ADDRESSES))
        self.ssh_config = workdir / "ssh_config"
        self.hosts: dict[str, Container] = {}

    def start(self) -> None:
        self.net.create()
        names = {HOST_NAMES[role]: address for role, address in HOST_ADDRESSES.items()}
        for role, name in HOST_NAMES.items():
            host = Container(self.workdir / role, name=name, netns=self.net.namespaces[role])
            host.prepare(rootfs_tarball(), hosts=names)
            self.hosts[role] = host
        for role in self.hosts:
            self.boot(role)

    def boot(self, role: str) -> None:
        self.hosts[role].boot()
        self.ssh_config.write_text("".join(h.ssh_entry() for h in self.hosts.values() if h.pid))

    @property
    def primary(self) -> Container:
        return self.hosts["primary"]

    @property
    def worker(self) -> Container:
        return self.hosts["worker"]

    def deploy(self, label: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
        """deploy_to_server.sh with these variables; returns its result and wall time."""
        started = time.monotonic()
        result = subprocess.run(
            ["bash", str(ROOT / "ops/scripts/deploy_to_server.sh"), *args],
            env={**os.environ, "SSH_OPTS": f"-F {self.ssh_config}", **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.monotonic() - started
        print(f"\n{label}: {took:.1f}s (exit {result.returncode})")
        return result, took

    def destroy(self) -> None:
        for host in self.hosts.values():
            host.destroy()
        self.net.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[TwoHosts]:
    containers_possible()
    if shutil.which("ip") is None:
        pytest.skip("needs ip (apt-get install iproute2)")
    cluster = TwoHosts(Path(tempfile.mkdtemp(prefix="trad-hosts-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
