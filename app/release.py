"""The code version stamped on every saved configuration: the package version and the commit.

A deployed release has no git checkout: the deploy script writes the commit into a `RELEASE`
file at the root of the release. A checkout asks git. Failing both, the package version alone.
The package version is the one in the `pyproject.toml` beside the running code (a release is not
installed into its virtualenv as a package), else the installed package's metadata.
"""

from __future__ import annotations

import subprocess
import tomllib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE_FILE = ROOT / "RELEASE"


def package_version(root: Path = ROOT) -> str:
    try:
        version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
        if isinstance(version, str) and version:
            return version
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        pass
    try:
        return metadata.version("trad")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _commit(root: Path) -> str | None:
    release = root / "RELEASE"
    if release.is_file():
        text = release.read_text().strip()
        if text and text != "unknown":
            return text
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def code_version(root: Path = ROOT) -> str:
    """`<package version>+<commit>` (e.g. `0.1.0+3f2a9c1b7d4e`), or the package version alone."""
    commit, version = _commit(root), package_version(root)
    return f"{version}+{commit}" if commit else version


@lru_cache(maxsize=1)
def current_code_version() -> str:
    return code_version()
