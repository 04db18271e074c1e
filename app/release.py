"""The code version stamped on every saved configuration: the package version and the commit.

A deployed release has no git checkout: the deploy script writes the commit into a `RELEASE`
file at the root of the release. A checkout asks git. Failing both, the package version alone.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE_FILE = ROOT / "RELEASE"


def package_version() -> str:
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
    commit = _commit(root)
    return f"{package_version()}+{commit}" if commit else package_version()


@lru_cache(maxsize=1)
def current_code_version() -> str:
    return code_version()
