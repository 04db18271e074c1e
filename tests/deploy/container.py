"""A real Debian 12 with systemd as PID 1, booted with systemd-nspawn in its own network
namespace and reached over real SSH through that namespace (no network address needed).

The root filesystem is built once with debootstrap and cached as a tarball; each run unpacks
a fresh copy. By default the container has only its own loopback; given a namespace the test
made (tests/deploy/network.py), it boots into that one and joins its private network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,sudo,curl,ca-certificates,"
    "redis-server,postgresql,rsync,iproute2,procps,nginx,openssl,jq"
)
SUITE = "bookworm"


class ContainerError(RuntimeError):
    pass


def host_mirror() -> str | None:
    """The Debian mirror this machine's apt uses, so the test needs no address of its own."""
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.exists():
            text = path.read_text()
            match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
                r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)\s+\S+\s+main", text, re.M
            )
            if match:
                return match.group(1)
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("TRAD_E2E_CACHE", Path.home() / ".cache/trad-e2e"))


def rootfs_tarball() -> Path:
    """Build (once) and return the cached root filesystem tarball."""
    key = hashlib.sha256(f"{SUITE}:{PACKAGES}:v2".encode()).hexdigest()[:12]
    tarball = cache_dir() / f"rootfs-{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    build = tarball.parent / f"build-{key}"
    shutil.rmtree(build, ignore_errors=True)
    cmd = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(build)]
    mirror = host_mirror()
    if mirror:
        cmd.append(mirror)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ContainerError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    # No first-boot wizard; start with an empty machine id so each boot gets one.
    (build / "etc/systemd/system/systemd-firstboot.service").symlink_to("/dev/null")
    (build / "etc/machine-id").write_text("")
    (build / "etc/hostname").write_text("trad-vm\n")
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "--create", "--file", str(partial), "--numeric-owner", "-C", str(build), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(build, ignore_errors=True)
    return tarball


@dataclass
class Container:
    workdir: Path
    name: str = "trad-vm"  # its hostname, and the SSH alias of its ssh_config
    netns: str | None = None  # boot into this network namespace instead of a private one
    rootfs: Path = field(init=False)
    key: Path = field(init=False)
    ssh_config: Path = field(init=False)
    proc: subprocess.Popen | None = None
    pid: int = 0  # the container's systemd, as the host sees it

    def __post_init__(self) -> None:
        self.rootfs = self.workdir / "rootfs"
        self.key = self.workdir / "id_ed25519"
        self.ssh_config = self.workdir / "ssh_config"

    def prepare(self, tarball: Path, hosts: dict[str, str] | None = None) -> None:
        """Unpack a fresh root filesystem with this container's hostname, `hosts` (name ->
        address) in /etc/hosts, and the test's SSH key for root."""
        self.rootfs.mkdir(parents=True)
        subprocess.run(
            ["tar", "--extract", "--file", str(tarball), "--numeric-owner", "-C", str(self.rootfs)], check=True
        )
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        ssh_dir = self.rootfs / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text((self.workdir / "id_ed25519.pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        (self.rootfs / "etc/hostname").write_text(f"{self.name}\n")
        if hosts is not None:
            lines = ["127.0.0.1\tlocalhost\n", f"127.0.1.1\t{self.name}\n"]
            lines += [f"{address}\t{host}\n" for host, address in hosts.items() if host != self.name]
            (self.rootfs / "etc/hosts").write_text("".join(lines))

    def boot(self, timeout: float = 120) -> None:
        log = open(self.workdir / "console.log", "ab")  # noqa: SIM115 - owned by nspawn
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--register=no",
                "--keep-unit",
                f"--network-namespace-path=/run/netns/{self.netns}" if self.netns else "--private-network",
                "-D",
                str(self.rootfs),
                "--boot",
                "--console=passive",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self.pid:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ContainerError(f"container did not start; see {self.workdir / 'console.log'}")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            for child in children:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    self.pid = int(child)
            time.sleep(0.1)
        self.ssh_config.write_text(self.ssh_entry())
        while True:
            state = self.ssh("systemctl is-system-running --wait", check=False, timeout=60)
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise ContainerError(f"container not running after {timeout}s: {state.stdout} {state.stderr}")
            time.sleep(0.5)

    def ssh_entry(self) -> str:
        """This container's block of an ssh_config: its name, reached through its namespace."""
        return (
            f"Host {self.name}\n  User root\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 10\n"
            f"  ProxyCommand nsenter -t {self.pid} -n nc 127.0.0.1 22\n"
        )

    def ssh(self, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["ssh", "-F", str(self.ssh_config), self.name, command], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise ContainerError(f"`{command}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def curl(self, *args: str) -> subprocess.CompletedProcess:
        """curl run inside the container's network namespace (the API listens there)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", "curl", "-sS", *args], capture_output=True, text=True, timeout=60
        )

    def poweroff(self, timeout: float = 120) -> None:
        self.ssh("systemctl poweroff", check=False, timeout=30)
        assert self.proc is not None
        self.proc.wait(timeout)
        self.pid = 0

    def power_cut(self, timeout: float = 60) -> None:
        """SIGKILL the container's PID 1: every process in it dies at once, nothing shuts down
        in order, nothing is flushed. Its network namespace (the test's) stays."""
        assert self.proc is not None and self.pid
        os.kill(self.pid, 9)
        self.proc.wait(timeout)
        self.pid = 0

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
