"""A strategy package written to a directory, as an operator would hand it to the deploy
(STRATEGY_PACKAGES): its own pyproject.toml and an entry point under `trad.strategies`."""

from __future__ import annotations

from pathlib import Path

ENTRY_POINT_GROUP = "trad.strategies"


def write_package(
    root: Path, name: str = "tinystrat", version: str = "0.1.0", dependencies: tuple[str, ...] = ("numpy",)
) -> Path:
    """The package's directory: `name` declares the strategy `name` (class `Strategy`)."""
    root.mkdir(parents=True, exist_ok=True)
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{deps}]\n\n'
        f'[project.entry-points."{ENTRY_POINT_GROUP}"]\n{name} = "{name}:Strategy"\n\n'
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (root / name).mkdir(exist_ok=True)
    (root / name / "__init__.py").write_text(f'class Strategy:\n    name = "{name}"\n    version = "{version}"\n')
    return root


# Run by the release's Python on a host: the entry points of the group, as `name=value` lines,
# each loaded (so the package is importable there, not merely listed).
LIST_ENTRY_POINTS = (
    "import importlib.metadata as m\n"
    f"for e in sorted(m.entry_points(group={ENTRY_POINT_GROUP!r}), key=lambda e: e.name):\n"
    "    e.load()\n"
    "    print(f'{e.name}={e.value}')\n"
)


def release_entry_points(host) -> list[str]:
    """The strategies' entry points the live release's virtualenv has on `host`, run from `/`
    (not the release's directory), so only installed distributions count."""
    script = LIST_ENTRY_POINTS.replace("'", "'\\''")
    return host.ssh(f"cd / && /srv/trad/current/venv/bin/python -c '{script}'").stdout.split()
