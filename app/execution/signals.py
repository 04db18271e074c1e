"""The signals a job process gets: the checkpoint request from the worker (SIGUSR1 on SIGTERM),
and its own watchdog's interruption (SIGALRM, which RQ turns into JobTimeoutException)."""

from __future__ import annotations

import math
import os
import signal
import time

CHECKPOINT_SIGNAL = signal.SIGUSR1
INTERRUPT_SIGNAL = signal.SIGALRM
_requested_at: float | None = None  # monotonic time of the request
_interrupted: str | None = None  # why the watchdog interrupted the attempt


def _on_checkpoint(signum, frame) -> None:
    global _requested_at
    if _requested_at is None:
        _requested_at = time.monotonic()


def install() -> None:
    """Called in the job process right after fork."""
    global _requested_at, _interrupted
    _requested_at, _interrupted = None, None
    signal.signal(CHECKPOINT_SIGNAL, _on_checkpoint)


def checkpoint_requested() -> bool:
    return _requested_at is not None


def stop_deadline(budget_s: float) -> float:
    """Monotonic time by which a stopping job must be gone (infinity if no stop was asked)."""
    return math.inf if _requested_at is None else _requested_at + budget_s


def interrupt(reason: str) -> None:
    """Interrupt the job where it is (from the watchdog thread): the exception is raised in the
    main thread at its next Python instruction, and `interrupted()` says why from now on, so
    code that sees another error meanwhile (a statement cut in half fails with an
    OperationalError) does not take it for an outage and try again."""
    global _interrupted
    _interrupted = reason
    os.kill(os.getpid(), INTERRUPT_SIGNAL)


def interrupted() -> str | None:
    return _interrupted
