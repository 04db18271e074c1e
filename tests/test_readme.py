"""README.md keeps up with the code: its settings list names every setting, and its map of the
tree names every package and top-level module of app/."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The text of the README section `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def test_the_settings_list_names_every_setting():
    named = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", section("Configuration")))
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in named)
    assert missing == [], f"README.md's Configuration section lacks {missing}"


def test_the_map_names_every_package_and_module_of_app():
    rows = [line for line in section("Map of the tree").splitlines() if line.startswith("| `")]
    mapped = {path for row in rows for path in re.findall(r"`([^`]+)`", row.split(" | ")[0])}
    app = ROOT / "app"
    parts = [f"app/{p.name}/" for p in app.iterdir() if (p / "__init__.py").is_file()]
    parts += [f"app/{p.name}" for p in app.glob("*.py") if p.name != "__init__.py"]
    missing = sorted(part for part in parts if part not in mapped)
    assert len(parts) > 20 and missing == [], f"README.md's map of the tree lacks {missing}"
