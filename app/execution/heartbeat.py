"""The attempt's heartbeat: a thread in the job process that touches training_attempts every
few seconds. The reaper declares an attempt lost when this stops."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

from app.clock import utcnow
from app.db import transaction
from app.execution import signals
from app.repositories import attempts as attempts_repo
from app.settings import Settings

log = logging.getLogger(__name__)


# After interrupting, the watchdog waits this long for the attempt to start ending, then
# interrupts again (code that caught the first interruption as an error of its own would
# otherwise run on unwatched), at most INTERRUPT_TRIES times in all.
INTERRUPT_REPEAT_S = 10.0
INTERRUPT_TRIES = 3
# How long past the last interruption it keeps beating for an attempt that is recording its
# end, beyond the job's PostgreSQL outage budget: past that, the process is stuck, and the
# reaper, finding the heartbeat stale, gives the job to another attempt.
ENDING_GRACE_S = 60.0


class Heartbeat(threading.Thread):
    """Also the attempt's watchdog: past the kind's hard timeout, or with no progress for its
    stall timeout, it interrupts the job (SIGALRM, which RQ turns into JobTimeoutException in
    the job's thread) and records why in `reason` ("timeout" or "stalled"). It goes on beating
    while the attempt records its end (`ending()`), so the reaper never takes an attempt that is
    stopping for a lost one."""

    def __init__(
        self, settings: Settings, attempt_id: int, *, timeout_s: float, stall_timeout_s: float, last_progress
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self._settings = settings
        self._attempt_id = attempt_id
        self.timeout_s = timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._last_progress = last_progress  # callable → monotonic time of the last progress report
        self._began = time.monotonic()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # orders `ending()` against a repeated interruption
        self._ending = False
        self.interruptions = 0
        self._interrupted_at = 0.0
        self._last_beat = 0.0
        self._context = contextvars.copy_context()  # the job's: its lines carry the job id

    def run(self) -> None:
        self._context.run(self._run)

    def _run(self) -> None:
        interval = self._settings.heartbeat_interval_s
        while not self._stopping.wait(min(interval, 1.0)):
            now = time.monotonic()
            if now - self._last_beat >= interval:
                self.beat()
            if self.reason is None:
                if now - self._began > self.timeout_s:
                    self._interrupt("timeout", f"attempt ran past its hard timeout of {self.timeout_s:.0f}s")
                elif now - self._last_progress() > self.stall_timeout_s:
                    self._interrupt("stalled", f"no progress for {self.stall_timeout_s:.0f}s")
            elif now - self._interrupted_at > self._settings.db_outage_budget_s + ENDING_GRACE_S:
                log.error(
                    "the attempt has not ended %.0fs after it was interrupted; no more heartbeats",
                    now - self._interrupted_at,
                )
                return
            elif now - self._interrupted_at >= INTERRUPT_REPEAT_S and self.interruptions < INTERRUPT_TRIES:
                self._interrupt(self.reason, "the attempt is still running after its interruption")

    def _interrupt(self, reason: str, message: str) -> None:
        with self._lock:
            if self._ending:
                return
            log.error("%s: stopping this attempt", message)
            self.interruptions += 1
            self._interrupted_at = time.monotonic()
            signals.interrupt(reason)

    @property
    def reason(self) -> str | None:
        """Why this job process was interrupted ("timeout" or "stalled"), or None."""
        return signals.interrupted()

    def ending(self) -> None:
        """The attempt is recording its end: no interruption is sent from now on (heartbeats
        go on until `stop`)."""
        with self._lock:
            self._ending = True

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        try:
            with transaction(self._settings.database_url) as session:
                attempts_repo.touch_heartbeat(session, self._attempt_id, utcnow())
        except Exception as exc:  # PostgreSQL briefly away: the next beat tries again
            log.warning("heartbeat not written: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
