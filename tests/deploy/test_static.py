"""Every shell script passes shellcheck; every unit passes systemd-analyze verify."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPTS = [*sorted(p for p in (ROOT / "ops/scripts").glob("*.sh")), ROOT / ".ci/run"]
UNITS = sorted((ROOT / "ops/systemd").iterdir())


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path):
    result = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path):
    """Verified against a scratch root holding the host's system units, ours, and a stand-in
    for the release's Python, so the check does not depend on a deployed server."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    python = root / "srv/trad/current/venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *(str(root / "etc/systemd/system" / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_units_have_the_promised_settings():
    worker = (ROOT / "ops/systemd/trad-worker@.service").read_text()
    api = (ROOT / "ops/systemd/trad-api.service").read_text()
    for text in (worker, api):
        for line in (
            "Type=notify",
            "KillMode=mixed",
            "Restart=on-failure",
            "User=trad",
            "EnvironmentFile=/etc/trad/trad.env",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
        ):
            assert line in text.splitlines(), line
    assert "WatchdogSec=60" in worker.splitlines()
