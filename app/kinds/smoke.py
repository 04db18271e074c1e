"""The `smoke` kind: what the rest of the service needs to know about it. Its handler (a little
real work through every layer, to prove a deploy) is `app.smoke.job`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.kinds.limits import Limits

if TYPE_CHECKING:
    from app.settings import Settings

NAME = "smoke"
HANDLER = "app.smoke.job:run_smoke_job"
STEPS = 4


def count_iterations(params: dict[str, Any]) -> int:
    return STEPS


def limits(settings: Settings) -> Limits:
    return Limits(settings.smoke_max_attempts, settings.smoke_timeout_s, settings.smoke_stall_timeout_s)
