"""One way to wait out an outage: call again with exponential backoff until it answers, the
deadline passes, or the caller gives up. Used for PostgreSQL in the job process and at the end
of an attempt, for Redis in the worker loop, and for both at start-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry_until(
    call: Callable[[], T],
    *,
    retry_on: tuple[type[Exception], ...],
    budget_s: float | None,
    first_delay_s: float = 0.5,
    max_delay_s: float = 5.0,
    on_retry: Callable[[Exception, float], None] | None = None,
    give_up: Callable[[], bool] | None = None,
    wait_for: Callable[[Exception, float], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, again after each error in `retry_on`, waiting first_delay_s, then twice as
        long each time up to max_delay_s. The error is raised once `budget_s` has passed (None:
        never) or `give_up()` is true. `on_retry(error, delay)` runs before each wait; `sleep` waits
    (one that returns early lets a caller cut the wait short). `wait_for(error, delay)`, if given,
    says how long to wait after this error instead (e.g. at least what a server's Retry-After
    asks); the backoff carries on doubling from `delay` either way."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    delay = first_delay_s
    while True:
        try:
            return call()
        except retry_on as exc:
            if (deadline is not None and time.monotonic() > deadline) or (give_up is not None and give_up()):
                raise
            wait = delay if wait_for is None else wait_for(exc, delay)
            if on_retry is not None:
                on_retry(exc, wait)
            sleep(wait)
            delay = min(2 * delay, max_delay_s)
