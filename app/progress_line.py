"""`trad jobs follow ID`: a job's progress in the terminal until it ends.

One line, redrawn in place on a terminal (a new line per change otherwise): status, phase,
a bar with the percent, iteration, best score and ETA. The exit status is the outcome.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from app.db import transaction
from app.services import jobs as jobs_service
from app.settings import Settings
from app.status import FINISHED_JOB_STATUSES, JobStatus

# The exit status for each way a job ends (as `trad --help` lists them).
EXIT_STATUS = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.CANCELED: 4}
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render(s) -> str:
    """The line for a progress row of `job_reads` (`snapshot`)."""
    filled = round(BAR_WIDTH * min(max(s.percent, 0.0), 100.0) / 100)
    parts = [f"{s.status:<9}", f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {s.percent:5.1f}%"]
    if s.phase:
        parts.append(s.phase)
    if s.iteration is not None:
        parts.append(f"iter {s.iteration}" + (f"/{s.n_iterations}" if s.n_iterations else ""))
    if s.best_score is not None:
        parts.append(f"best {s.best_score:.4g}")
    if s.status == JobStatus.RUNNING and s.eta_seconds is not None:
        parts.append(f"ETA {_duration(s.eta_seconds)}")
    if s.status in FINISHED_JOB_STATUSES and s.error_type:
        parts.append(f"{s.error_type}: {s.error_message}")
    return "  ".join(parts)


def snapshot(settings: Settings, job_id: uuid.UUID):
    """The job's progress row (`job_reads.progress`, the API's statement); NotFound if none."""
    with transaction(settings.database_url) as session:
        return jobs_service.progress(session, job_id)


def follow(
    read: Callable[[], Any],
    out: TextIO,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll `read` until the job ends; return its exit status (0 succeeded, 1 failed, 4 canceled)."""
    tty = out.isatty()
    last = ""
    while True:
        s = read()
        line = render(s)
        if tty:
            out.write("\r\x1b[2K" + line)
        elif line != last:
            out.write(line + "\n")
        out.flush()
        last = line
        if s.status in FINISHED_JOB_STATUSES:
            if tty:
                out.write("\n")
            return EXIT_STATUS[s.status]
        sleep(interval)
