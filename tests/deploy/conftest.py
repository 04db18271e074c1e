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
from tests.support import ROOT

NEEDED = ("systemd-nspawn", "debootstrap", "nsenter", "nc", "ssh", "ssh-keygen")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: deploys to a real Debian 12 with systemd in a container")


@pytest.fixture(scope="module")
def vm() -> Iterator[Container]:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install systemd-container debootstrap netcat-openbsd)")
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root")
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

    def __call__(self, tree: Path = ROOT, workers: int = 2, label: str = "deploy") -> subprocess.CompletedProcess:
        env = {**os.environ, "SERVER": "trad-vm", "SSH_OPTS": f"-F {self.vm.ssh_config}", "WORKERS": str(workers)}
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
