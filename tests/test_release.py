"""The code version: the deploy's RELEASE file, else git in a checkout, else the package version."""

from __future__ import annotations

import subprocess
import sys

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


def test_a_release_without_the_package_installed_reads_its_pyproject(tmp_path):
    """A deployed release runs from its directory without `trad` installed in the virtualenv:
    the version comes from the release's own pyproject.toml (it read "0+unknown" before)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "trad"\nversion = "4.5.6"\n')
    (tmp_path / "RELEASE").write_text("0123456789ab\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    script = (
        "import sys; from importlib import metadata; from pathlib import Path\n"
        "def missing(name): raise metadata.PackageNotFoundError(name)\n"
        "metadata.version = missing\n"
        "from app.release import code_version\n"
        f"print(code_version(Path({str(tmp_path)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4.5.6+0123456789ab"
