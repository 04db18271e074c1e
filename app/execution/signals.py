"""The checkpoint request from the worker to its job process (SIGUSR1 on SIGTERM)."""

from __future__ import annotations

import signal

CHECKPOINT_SIGNAL = signal.SIGUSR1
_requested = False


def _on_checkpoint(signum, frame) -> None:
    global _requested
    _requested = True


def install() -> None:
    """Called in the job process right after fork."""
    global _requested
    _requested = False
    signal.signal(CHECKPOINT_SIGNAL, _on_checkpoint)


def checkpoint_requested() -> bool:
    return _requested
