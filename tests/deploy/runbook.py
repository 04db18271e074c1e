"""The command blocks of docs/operations.md, by their markers, so the runbook and the tests that
run it cannot drift: `<!-- run: NAME -->` before a ```sh block is run by the end-to-end test
exactly as written; `<!-- not run: REASON -->` says why a block is not."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support import ROOT

RUNBOOK = ROOT / "docs/operations.md"
BLOCK = re.compile(r"^(?:<!-- (run|not run): ([^>]*?) -->\n)?```sh\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    marker: str | None  # "run", "not run" or None (unmarked)
    label: str
    commands: str


def blocks() -> list[Block]:
    return [Block(m.group(1), (m.group(2) or "").strip(), m.group(3)) for m in BLOCK.finditer(RUNBOOK.read_text())]


def runnable() -> dict[str, str]:
    return {b.label: b.commands for b in blocks() if b.marker == "run"}
