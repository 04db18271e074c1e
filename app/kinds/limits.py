"""What bounds one attempt of a job kind. Each kind reads its limits from the settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_attempts: int  # attempts that may fail or be lost before the job fails
    timeout_s: int  # hard limit for one attempt
    stall_timeout_s: int  # no progress for this long: the attempt is stalled
