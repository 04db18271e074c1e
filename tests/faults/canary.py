"""A callable that leaves a mark: the directory its job's meta names. A test names it as a
queue entry's callback and looks for the mark to see whether any worker ran it."""

from __future__ import annotations

from pathlib import Path


def ran(job, *args, **kwargs) -> None:
    Path(job.meta["canary"]).mkdir()
