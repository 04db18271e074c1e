"""The attempt's heartbeat: a thread in the job process that touches training_attempts every
few seconds. The reaper declares an attempt lost when this stops."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from sqlalchemy import update

from app.clock import utcnow
from app.db import transaction
from app.models import Attempt
from app.settings import Settings

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, settings: Settings, attempt_id: int, stall_timeout_s: float, last_progress) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self._settings = settings
        self._attempt_id = attempt_id
        self._stall_timeout_s = stall_timeout_s
        self._last_progress = last_progress  # callable → monotonic time of the last progress report
        self._stop = threading.Event()
        self.stalled = False

    def run(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_interval_s):
            self.beat()
            if time.monotonic() - self._last_progress() > self._stall_timeout_s:
                log.error("no progress for %.0fs: stopping this attempt as stalled", self._stall_timeout_s)
                self.stalled = True
                # SIGALRM is how the job process is interrupted; the runner sees `stalled`.
                os.kill(os.getpid(), signal.SIGALRM)
                return

    def beat(self) -> None:
        try:
            with transaction(self._settings.database_url) as session:
                session.execute(
                    update(Attempt)
                    .where(Attempt.id == self._attempt_id, Attempt.status == "running")
                    .values(heartbeat_at=utcnow())
                )
        except Exception as exc:  # PostgreSQL briefly away: the next beat tries again
            log.warning("heartbeat not written: %s", exc)

    def stop(self) -> None:
        self._stop.set()
