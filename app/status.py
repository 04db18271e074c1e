"""The closed value sets of jobs and schedules: the only place their values are spelled.

The statuses of a job and of an attempt, a job's priority, a schedule's misfire and overlap
policies and the outcome of a schedule's fire. Models, constraints, schemas, the catalogue the
dashboard fills its selects from, the CLI and the tests take them from here;
`app.services.lifecycle` holds the moves between statuses. The values are what PostgreSQL, Redis
and the API carry: never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_finished(self) -> bool:
        """Nothing more happens to the job unless a user retries it."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def is_cancelable(self) -> bool:
        return not self.is_finished

    @property
    def is_retryable(self) -> bool:
        """A user may queue it again."""
        return self in (JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def is_succeeded(self) -> bool:
        return self is JobStatus.SUCCEEDED


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PREEMPTED = "preempted"  # stopped at a checkpoint by a worker stop: no attempt used up
    LOST = "lost"  # its worker vanished: found by the reaper or by the job process itself

    @property
    def is_finished(self) -> bool:
        return self is not AttemptStatus.RUNNING

    @property
    def uses_budget(self) -> bool:
        """Counts against the job's `max_attempts`."""
        return self in (AttemptStatus.FAILED, AttemptStatus.LOST)


class Priority(StrEnum):
    """Listed in strict priority order: a worker drains the first queue before the next."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class MisfirePolicy(StrEnum):
    """What a schedule does with the ticks it missed (the scheduler was down)."""

    RUN_ONCE = "run_once"  # one job for all the ticks missed
    SKIP = "skip"  # none: wait for the next tick


class OverlapPolicy(StrEnum):
    """What a tick does while the schedule's previous job is still queued or running."""

    SKIP = "skip"
    QUEUE = "queue"


class FireOutcome(StrEnum):
    STARTED = "started"  # its training job was started
    REFRESHING = "refreshing"  # its candles refresh job runs first; the training job starts after it succeeds
    REFRESH_FAILED = "refresh_failed"  # the refresh failed or was canceled: no training on stale candles
    SKIPPED_OVERLAP = "skipped_overlap"
    REFUSED = "refused"


FINISHED_JOB_STATUSES = tuple(s for s in JobStatus if s.is_finished)
BUDGET_ATTEMPT_STATUSES = tuple(s for s in AttemptStatus if s.uses_budget)
