"""`retry_until`: a caller's `wait_for` sets each wait (a server's Retry-After); the backoff under
it keeps doubling."""

from __future__ import annotations

import pytest

from app.retry import retry_until


def test_wait_for_sets_the_wait_and_the_backoff_keeps_doubling():
    errors = iter([OSError("429"), OSError("503"), OSError("reset")])
    waits: list[float] = []
    seen: list[tuple[str, float]] = []

    def call() -> str:
        error = next(errors, None)
        if error is not None:
            raise error
        return "answered"

    def wait_for(error: Exception, delay: float) -> float:
        seen.append((str(error), delay))
        return max(delay, 7.0) if str(error) == "429" else delay

    result = retry_until(call, retry_on=(OSError,), budget_s=None, first_delay_s=1, max_delay_s=30,
                         wait_for=wait_for, sleep=waits.append)  # fmt: skip
    assert result == "answered"
    assert seen == [("429", 1), ("503", 2), ("reset", 4)]
    assert waits == [7.0, 2, 4]


def test_without_wait_for_the_waits_are_the_backoff():
    calls = []

    def call() -> None:
        calls.append(1)
        raise OSError("down")

    waits: list[float] = []
    with pytest.raises(OSError):
        retry_until(call, retry_on=(OSError,), budget_s=None, first_delay_s=0.5, max_delay_s=2,
                    give_up=lambda: len(calls) > 4, sleep=waits.append)  # fmt: skip
    assert waits == [0.5, 1.0, 2, 2]
