"""Facts about the current job process, set by the worker right after fork."""

from __future__ import annotations

import os
import resource

from app.db import adopt_parent_engines
from app.execution import signals

worker_name = "worker"
parent_pid = 0


def enter_job_process(name: str, parent: int) -> None:
    global worker_name, parent_pid
    worker_name, parent_pid = name, parent
    signals.install()
    adopt_parent_engines()


def parent() -> int:
    return parent_pid or os.getppid()


def limit_memory(extra_mb: int) -> None:
    """Cap this job process's address space at what it inherited plus `extra_mb` (RLIMIT_AS),
    so a runaway job gets MemoryError instead of starving the machine. 0 leaves it unlimited
    (production bounds the whole unit with MemoryMax instead)."""
    if extra_mb <= 0:
        return
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
