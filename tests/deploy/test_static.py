"""Every shell script passes shellcheck; every unit passes systemd-analyze verify."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.settings import Settings
from tests.support import ROOT

SCRIPTS = [*sorted(p for p in (ROOT / "ops/scripts").glob("*.sh")), ROOT / "ops/scripts/trad", ROOT / ".ci/run"]
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


def test_the_worker_keeps_compiled_code_in_its_cache_directory():
    """numba writes the compiled backtest where systemd lets the unit write under
    ProtectSystem=strict: its own cache directory."""
    lines = (ROOT / "ops/systemd/trad-worker@.service").read_text().splitlines()
    assert "CacheDirectory=trad" in lines
    assert "Environment=NUMBA_CACHE_DIR=%C/trad/numba" in lines


def test_restarts_never_lock_a_unit_out_and_stopping_the_target_waits():
    for name in ("trad-api.service", "trad-worker@.service"):
        lines = (ROOT / "ops/systemd" / name).read_text().splitlines()
        assert "StartLimitIntervalSec=0" in lines, name
        assert not any(line.startswith("StartLimitBurst=") for line in lines), name
        assert "RestartSec=5" in lines, name  # what throttles a crash loop
        # Stop order is the reverse of start order: a unit After= the target stops before it.
        assert "PartOf=trad.target" in lines and "After=trad.target" in lines, name


def test_each_unit_receives_only_the_secrets_it_needs():
    def credentials(name: str) -> set[str]:
        lines = (ROOT / "ops/systemd" / name).read_text().splitlines()
        return {line.split("=", 1)[1].split(":", 1)[0] for line in lines if line.startswith("LoadCredential=")}

    assert credentials("trad-api.service") == {"database_url", "redis_url", "api_token"}
    assert credentials("trad-worker@.service") == {"database_url", "redis_url"}


def test_worker_memory_is_bounded_and_an_oom_kill_leaves_the_worker_running():
    lines = (ROOT / "ops/systemd/trad-worker@.service").read_text().splitlines()
    assert any(line.startswith("MemoryMax=") for line in lines)
    assert any(line.startswith("MemoryHigh=") for line in lines)
    assert "OOMPolicy=continue" in lines


def test_no_password_in_process_arguments():
    redis = (ROOT / "ops/scripts/install_redis.sh").read_text()
    server = (ROOT / "ops/scripts/server_install.sh").read_text()
    assert "--pass" not in redis and "REDISCLI_AUTH=" in redis
    assert '-c "ALTER ROLE' not in server and '-c "CREATE ROLE' not in server
    assert '<<<"ALTER ROLE trad WITH LOGIN PASSWORD' in server
    assert 'Bearer $token"' not in server  # the API token reaches curl on stdin
    docs = (ROOT / "docs/operations.md").read_text()
    assert "--pass" not in docs


def test_deploy_ships_to_a_fresh_root_only_directory_and_checks_what_arrived():
    script = (ROOT / "ops/scripts/deploy_to_server.sh").read_text()
    assert "/var/tmp/trad-deploy" not in script
    assert "install -d -m 0700 -o root -g root $REMOTE_PARENT" in script
    assert "mktemp -d $REMOTE_PARENT/" in script
    assert "sha256sum --quiet --strict -c SHA256SUMS" in script
    assert "trap remove_remote_dir EXIT" in script


def test_every_runbook_block_is_marked_run_or_not_run():
    from tests.deploy.runbook import RUNBOOK, blocks

    found = blocks()
    text = RUNBOOK.read_text()
    assert len(found) == text.count("```sh"), "a shell block the marker pattern does not see"
    assert all(b.marker in ("run", "not run") and b.label for b in found), [b for b in found if not b.marker]
    assert not re.search(r"^    \S", text, re.M), "indented code blocks are not checked; use ```sh blocks"
    labels = [b.label for b in found if b.marker == "run"]
    assert len(labels) == len(set(labels))
    assert {"data", "jobs", "logs", "scale", "backup", "restore", "https", "redis-admin"} <= set(labels)


def test_the_api_socket_is_systemds_and_stops_with_the_target():
    socket_unit = (ROOT / "ops/systemd/trad-api.socket").read_text().splitlines()
    api = (ROOT / "ops/systemd/trad-api.service").read_text().splitlines()
    assert "ListenStream=127.0.0.1:8000" in socket_unit  # loopback only, like API_HOST
    assert "PartOf=trad.target" in socket_unit and "WantedBy=trad.target" in socket_unit
    # Not required by the API: a release that binds its port itself still starts without it.
    assert not any(line.startswith(("Requires=trad-api.socket", "BindsTo=trad-api.socket")) for line in api)


DEBIAN_NGINX_CONF = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include /etc/nginx/modules-enabled/*.conf;

events {
\tworker_connections 768;
\t# multi_accept on;
}

http {
\tinclude /etc/nginx/sites-enabled/*;
}
"""


def size_nginx(conf: Path, *max_files: str) -> str:
    script = ROOT / "ops/scripts/size_nginx.sh"
    result = subprocess.run(["bash", str(script), str(conf), *max_files], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_nginx_is_sized_for_the_apis_streams_once_and_never_lowered(tmp_path: Path):
    """Debian's 768 connections per worker carry about 380 proxied streams; the deploy raises
    them to carry the API's FOLLOW_MAX_STREAMS in one worker, and a second run changes nothing."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(DEBIAN_NGINX_CONF)
    assert size_nginx(conf).splitlines() == [
        "worker_connections 24576 (was 768)",
        "worker_rlimit_nofile 65536 (was unset)",
    ]
    sized = conf.read_text()
    assert "\tworker_connections 24576;\n" in sized and "worker_connections 768" not in sized
    assert "worker_processes auto;\nworker_rlimit_nofile 65536;\n" in sized
    assert sized.replace("24576", "768").replace("worker_rlimit_nofile 65536;\n", "") == DEBIAN_NGINX_CONF
    assert 2 * Settings().follow_max_streams <= 24576, "two connections per stream"
    assert size_nginx(conf) == "" and conf.read_text() == sized

    larger = DEBIAN_NGINX_CONF.replace("768", "50000").replace("auto;", "auto;\nworker_rlimit_nofile 200000;")
    conf.write_text(larger)
    assert size_nginx(conf) == "" and conf.read_text() == larger

    bare = "worker_processes 2;\nevents {\n}\nhttp {\n}\n"
    conf.write_text(bare)
    assert size_nginx(conf).splitlines() == [
        "worker_connections 24576 (was nginx's default, 512)",
        "worker_rlimit_nofile 65536 (was unset)",
    ]
    assert (
        conf.read_text()
        == "worker_processes 2;\nworker_rlimit_nofile 65536;\nevents {\n\tworker_connections 24576;\n}\nhttp {\n}\n"
    )


def test_nginx_is_sized_within_the_open_files_it_may_have(tmp_path: Path):
    """Under a lower hard limit (a container's), the workers get that limit and 1,024 fewer
    connections: a limit nginx cannot set would leave them at 1,024 files."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(DEBIAN_NGINX_CONF)
    assert size_nginx(conf, "20000").splitlines() == [
        "worker_connections 18976 (was 768)",
        "worker_rlimit_nofile 20000 (was unset)",
    ]
    assert size_nginx(conf, "20000") == ""
    # The same server with a higher limit later: raised to the full size.
    assert size_nginx(conf, "524288").splitlines() == [
        "worker_connections 24576 (was 18976)",
        "worker_rlimit_nofile 65536 (was 20000)",
    ]
    assert size_nginx(conf, "unlimited") == ""


def test_nginx_without_an_events_block_is_refused(tmp_path: Path):
    conf = tmp_path / "nginx.conf"
    conf.write_text("http {\n}\n")
    result = subprocess.run(
        ["bash", str(ROOT / "ops/scripts/size_nginx.sh"), str(conf)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "no events block" in result.stderr
    assert conf.read_text() == "http {\n}\n"
