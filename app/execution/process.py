"""Facts about the current job process, set by the worker right after fork."""

from __future__ import annotations

import os

from app.execution import signals

worker_name = "worker"
parent_pid = 0


def enter_job_process(name: str, parent: int) -> None:
    global worker_name, parent_pid
    worker_name, parent_pid = name, parent
    signals.install()


def parent() -> int:
    return parent_pid or os.getppid()
