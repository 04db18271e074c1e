"""What a running job sees: its parameters, progress reporting, and check(), the one call a
handler makes at every iteration to learn whether it must stop (cancel, checkpoint, lost)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import autocommit_session, transaction
from app.execution import signals
from app.execution.errors import TRANSIENT_DB_ERRORS, Canceled, Fenced, Preempted, WorkerLost
from app.queue import AttemptInterrupted
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.retry import retry_until
from app.services import lifecycle
from app.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        worker_name: str = "",
    ) -> None:
        self.settings = settings
        self.worker_name = worker_name  # the RQ worker that forked this job process
        self.job_id = job_id
        self.kind = kind
        self.params = params
        self.attempt_id = attempt_id
        self.attempt_number = attempt_number
        self.n_iterations = n_iterations
        self._parent_pid = parent_pid
        self._last_poll = time.monotonic()  # the claim has just read the job: the first poll can wait
        self.last_progress_monotonic = time.monotonic()

    def run(self, work: Callable[[Session], T], *, one_statement: bool = False) -> T:
        """Run `work` in one transaction (`one_statement`: work that is a single statement,
        run in autocommit: one round trip). If PostgreSQL goes away (a restart, a failover) the
        transaction is tried again until it answers, for up to `db_outage_budget_s`, so a
        short outage costs the job nothing. A stop request ends the wait at once (Preempted):
        the stop path then has `stop_budget_s` to record the checkpoint. `work` must be safe
        to repeat."""

        def once() -> T:
            if one_statement:
                with autocommit_session(self.settings.database_url) as session:
                    return work(session)
            with transaction(self.settings.database_url) as session:
                return work(session)

        def waiting(exc: Exception, delay: float) -> None:
            log.warning("PostgreSQL unavailable; retrying in %.1fs: %s", delay, getattr(exc, "orig", None) or exc)

        try:
            return retry_until(
                once,
                retry_on=TRANSIENT_DB_ERRORS,
                budget_s=self.settings.db_outage_budget_s,
                first_delay_s=0.2,
                on_retry=waiting,
                give_up=lambda: signals.checkpoint_requested() or signals.interrupted() is not None,
                sleep=_sleep_unless_stopped,
            )
        except TRANSIENT_DB_ERRORS as exc:
            if signals.interrupted() is not None:  # the interruption cut a statement in half
                raise AttemptInterrupted(f"interrupted: {signals.interrupted()}") from exc
            if signals.checkpoint_requested():
                raise Preempted("worker stopping while PostgreSQL is unavailable") from exc
            raise

    def owns(self, session: Session) -> bool:
        """This attempt still owns the job (`Job.owned_by`)."""
        return jobs_repo.is_owned(session, self.job_id, self.attempt_id)

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
        row = self.run(lambda s: jobs_repo.stop_signals(s, self.job_id, self.attempt_id))
        if row is None:
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

        event = {
            "phase": phase,
            "percent": percent,
            "message": message,
            "iteration": iteration,
            "best_score": best_score,
            "created_at": now,
        }

        def write(session: Session) -> None:
            if not lifecycle.record_progress(session, self.job_id, self.attempt_id, values, event):
                raise Fenced("this attempt is no longer the job's current attempt")

        self.run(write, one_statement=True)
        self.last_progress_monotonic = time.monotonic()

    def set_resumed_from(self, iteration: int) -> None:
        """The attempt resumes after `iteration` persisted trials: on the job, and on the attempt
        (its "from trial" in the attempt history)."""

        def write(session) -> None:
            if jobs_repo.update_if_owned(session, self.job_id, self.attempt_id, {"resumed_from_iteration": iteration}):
                attempts_repo.set_start_iteration(session, self.attempt_id, iteration)

        self.run(write)


def _sleep_unless_stopped(seconds: float) -> None:
    """Sleep, waking early (within 0.1 s) when a stop is requested."""
    until = time.monotonic() + seconds
    while not signals.checkpoint_requested() and (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
