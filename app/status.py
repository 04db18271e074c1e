"""The statuses of a job and of an attempt: the only place their values are spelled.

Models, constraints, schemas, the CLI and the tests take them from here; `app.services.lifecycle`
holds the moves between them.
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


FINISHED_JOB_STATUSES = tuple(s for s in JobStatus if s.is_finished)
BUDGET_ATTEMPT_STATUSES = tuple(s for s in AttemptStatus if s.uses_budget)
