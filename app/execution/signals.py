"""The checkpoint request from the worker to its job process (SIGUSR1 on SIGTERM)."""

from __future__ import annotations

import math
import signal
import time

CHECKPOINT_SIGNAL = signal.SIGUSR1
_requested_at: float | None = None  # monotonic time of the request


def _on_checkpoint(signum, frame) -> None:
    global _requested_at
    if _requested_at is None:
        _requested_at = time.monotonic()


def install() -> None:
    """Called in the job process right after fork."""
    global _requested_at
    _requested_at = None
    signal.signal(CHECKPOINT_SIGNAL, _on_checkpoint)


def checkpoint_requested() -> bool:
    return _requested_at is not None


def stop_deadline(budget_s: float) -> float:
    """Monotonic time by which a stopping job must be gone (infinity if no stop was asked)."""
    return math.inf if _requested_at is None else _requested_at + budget_s
