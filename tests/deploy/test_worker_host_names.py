"""Worker-host names and the PostgreSQL role and Redis user each gets (ops/scripts/remote_access.sh),
run without a container: the script's functions, with PostgreSQL and Redis replaced by a log of
what would have been sent to them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "ops/scripts/remote_access.sh"
# Source the script (which then only defines its functions), stand in for the primary's
# PostgreSQL, Redis, CA and listen address, and run one of its commands.
HARNESS = """
source "$SCRIPT"
SCRIPT_DIR=$FAKE CA_DIR=$FAKE
psql_admin() { { echo "-- psql"; cat; } >> "$LOG"; }
listen_address() { echo 10.0.0.1; }
cluster() { echo "15 main 5432"; }
"$@"
"""


@pytest.fixture
def primary(tmp_path: Path):
    """Runs `remote_access.sh CMD HOST` against the stand-ins; returns the process and the log."""
    log = tmp_path / "sent.log"
    log.touch()
    (tmp_path / "ca.crt").write_text("CERTIFICATE\n")
    redis = tmp_path / "install_redis.sh"
    redis.write_text('#!/bin/bash\necho "-- redis $*" >> "$LOG"\ncat > /dev/null\n')

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "SCRIPT": str(SCRIPT), "FAKE": str(tmp_path), "LOG": str(log)}
        return subprocess.run(["bash", "-c", HARNESS, "harness", *args], env=env, capture_output=True, text=True)

    run.log = log
    return run


def test_names_that_would_share_a_role_are_refused_and_change_nothing(primary):
    """node-2, node.2 and Node-2 all became trad_host_node_2: adding the second re-issued the
    first host's password, removing either revoked both. Now only node-2 is a name; the others
    are refused, with the reason, before anything is sent."""
    added = primary("add", "node-2")
    assert added.returncode == 0, added.stderr
    assert "CREATE ROLE trad_host_node_2 WITH LOGIN" in primary.log.read_text()
    assert "database_url=postgresql+psycopg://trad_host_node_2:" in added.stdout
    before = primary.log.read_text()
    for name in ("node.2", "Node-2", "node_2", "NODE-2"):
        for command in ("add", "remove", "has"):
            refused = primary(command, name)
            assert refused.returncode != 0, f"{command} {name}: {refused.stderr}"
            assert f"worker host name '{name}': lowercase letters, digits and - only" in refused.stderr
            assert primary.log.read_text() == before, f"{command} {name} sent something"


def test_each_accepted_name_has_its_own_role_and_old_roles_can_be_removed(primary):
    names = ["node-2", "node2", "node--2", "n-o-de2", "trad-node2", "0"]
    roles = []
    for name in names:
        added = primary("add", name)
        assert added.returncode == 0, added.stderr
        roles.append(added.stdout.split("postgresql+psycopg://", 1)[1].split(":", 1)[0])
    assert roles[:2] == ["trad_host_node_2", "trad_host_node2"], "existing deploys' names keep their roles"
    assert len(set(roles)) == len(names)
    # A host added under a name no longer accepted is removed by its role, as `list` prints it.
    removed = primary("remove", "trad_host_node_example_com")
    assert removed.returncode == 0, removed.stderr
    assert "DROP ROLE trad_host_node_example_com;" in primary.log.read_text()
    assert "-- redis del-user trad_host_node_example_com" in primary.log.read_text()
