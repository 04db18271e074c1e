"""The `training` kind: what the rest of the service needs to know about it. Its handler (the
phases, progress mapping and trial persistence) is `app.training.job`."""

from __future__ import annotations

from typing import Any

from app.kinds.limits import Limits

NAME = "training"
HANDLER = "app.training.job:run_training_job"
DEFAULT_LIMITS = Limits(max_attempts=3, timeout_s=30 * 60, stall_timeout_s=5 * 60)


def count_iterations(params: dict[str, Any]) -> int:
    """One iteration per optimisation trial: `n_iterations` per walk-forward window, or once."""
    validation = params.get("validation") or {}
    windows = int(validation.get("windows", 1)) if validation.get("mode") == "walk_forward" else 1
    return int(params["n_iterations"]) * windows
