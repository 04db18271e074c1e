"""The `training` kind: what the rest of the service needs to know about it. Its handler (the
phases, progress mapping and trial persistence) is `app.training.job`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.kinds.limits import Limits

if TYPE_CHECKING:
    from app.settings import Settings

NAME = "training"
HANDLER = "app.training.job:run_training_job"


def count_iterations(params: dict[str, Any]) -> int:
    """One iteration per optimisation trial: `n_iterations` per walk-forward window, or once."""
    validation = params.get("validation") or {}
    windows = int(validation.get("windows", 1)) if validation.get("mode") == "walk_forward" else 1
    return int(params["n_iterations"]) * windows


def limits(settings: Settings) -> Limits:
    return Limits(settings.training_max_attempts, settings.training_timeout_s, settings.training_stall_timeout_s)
