"""What a running job sees: its parameters, progress reporting, and check(), the one call a
handler makes at every iteration to learn whether it must stop (cancel, checkpoint, lost)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import transaction
from app.execution import signals
from app.execution.errors import Canceled, Fenced, Preempted, WorkerLost
from app.models import Job, ProgressEvent
from app.settings import Settings


class JobContext:
    def __init__(
        self,
        settings: Settings,
        *,
        job_id: uuid.UUID,
        kind: str,
        params: dict[str, Any],
        attempt_id: int,
        attempt_number: int,
        n_iterations: int | None,
        parent_pid: int,
    ) -> None:
        self.settings = settings
        self.job_id = job_id
        self.kind = kind
        self.params = params
        self.attempt_id = attempt_id
        self.attempt_number = attempt_number
        self.n_iterations = n_iterations
        self._parent_pid = parent_pid
        self._last_poll = 0.0
        self.last_progress_monotonic = time.monotonic()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction for the handler's own reads and writes."""
        with transaction(self.settings.database_url) as session:
            yield session

    def _current(self):
        return (Job.id == self.job_id) & (Job.current_attempt_id == self.attempt_id) & (Job.status == "running")

    def check(self) -> None:
        """Raise if this attempt must stop. Cheap: PostgreSQL is polled at most every cancel_poll_s."""
        if signals.checkpoint_requested():
            raise Preempted("worker stopping")
        if os.getppid() != self._parent_pid:
            raise WorkerLost("the worker process that started this job is gone")
        now = time.monotonic()
        if now - self._last_poll < self.settings.cancel_poll_s:
            return
        self._last_poll = now
        with self.session() as session:
            row = session.execute(
                select(Job.status, Job.current_attempt_id, Job.cancel_requested_at).where(Job.id == self.job_id)
            ).one_or_none()
        if row is None or row.status != "running" or row.current_attempt_id != self.attempt_id:
            raise Fenced("this attempt is no longer the job's current attempt")
        if row.cancel_requested_at is not None:
            raise Canceled("cancel requested")

    def progress(
        self,
        percent: float,
        phase: str,
        message: str | None = None,
        *,
        iteration: int | None = None,
        best_score: float | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        """Record progress on the job row and in its history, if still the current attempt."""
        percent = max(0.0, min(100.0, float(percent)))
        now = utcnow()
        values: dict[str, Any] = {
            "percent": percent,
            "phase": phase,
            "message": message,
            "updated_at": now,
            "last_progress_at": now,
            "eta_seconds": eta_seconds,
        }
        if iteration is not None:
            values["iteration"] = iteration
        if best_score is not None:
            values["best_score"] = best_score
        with self.session() as session:
            result = session.execute(update(Job).where(self._current()).values(**values))
            if result.rowcount != 1:
                raise Fenced("this attempt is no longer the job's current attempt")
            session.execute(
                insert(ProgressEvent).values(
                    job_id=self.job_id,
                    attempt_id=self.attempt_id,
                    phase=phase,
                    percent=percent,
                    message=message,
                    iteration=iteration,
                    best_score=best_score,
                    created_at=now,
                )
            )
        self.last_progress_monotonic = time.monotonic()

    def set_resumed_from(self, iteration: int) -> None:
        with self.session() as session:
            session.execute(update(Job).where(self._current()).values(resumed_from_iteration=iteration))
