"""The attempt's heartbeat: a thread in the job process that touches training_attempts every
few seconds. The reaper declares an attempt lost when this stops."""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import threading
import time

from app.clock import utcnow
from app.db import transaction
from app.repositories import attempts as attempts_repo
from app.settings import Settings

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Also the attempt's watchdog: past the kind's hard timeout, or with no progress for its
    stall timeout, it interrupts the job (SIGALRM, which RQ turns into JobTimeoutException in
    the job's thread) and records why in `reason` ("timeout" or "stalled")."""

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
        self.reason: str | None = None
        self._last_beat = 0.0
        self._context = contextvars.copy_context()  # the job's: its lines carry the job id

    def run(self) -> None:
        self._context.run(self._run)

    def _run(self) -> None:
        while not self._stopping.wait(min(self._settings.heartbeat_interval_s, 1.0)):
            now = time.monotonic()
            if now - self._last_beat >= self._settings.heartbeat_interval_s:
                self.beat()
            if now - self._began > self.timeout_s:
                self._interrupt("timeout", f"attempt ran past its hard timeout of {self.timeout_s:.0f}s")
                return
            if now - self._last_progress() > self.stall_timeout_s:
                self._interrupt("stalled", f"no progress for {self.stall_timeout_s:.0f}s")
                return

    def _interrupt(self, reason: str, message: str) -> None:
        log.error("%s: stopping this attempt", message)
        self.reason = reason
        os.kill(os.getpid(), signal.SIGALRM)

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        try:
            with transaction(self._settings.database_url) as session:
                attempts_repo.touch_heartbeat(session, self._attempt_id, utcnow())
        except Exception as exc:  # PostgreSQL briefly away: the next beat tries again
            log.warning("heartbeat not written: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
