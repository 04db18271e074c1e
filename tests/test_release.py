"""The code version: the deploy's RELEASE file, else git in a checkout, else the package version."""

from __future__ import annotations

import subprocess

from app.release import ROOT, code_version, package_version


def test_release_file_names_the_commit(tmp_path):
    (tmp_path / "RELEASE").write_text("0123456789ab\n")
    assert code_version(tmp_path) == f"{package_version()}+0123456789ab"


def test_a_checkout_asks_git():
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (ROOT / "RELEASE").exists():
        assert code_version(ROOT) == f"{package_version()}+{head}"


def test_without_either_it_is_the_package_version(tmp_path):
    assert code_version(tmp_path) == package_version() != ""
    (tmp_path / "RELEASE").write_text("unknown\n")
    assert code_version(tmp_path) == package_version()
