"""A smoke job runs through a real forking worker, from commit to succeeded."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Attempt, Job, ProgressEvent
from app.status import AttemptStatus, JobStatus
from tests.support import submit_smoke, wait_until


def test_smoke_job_succeeds_on_a_forking_worker(db, clean, workers):
    job = submit_smoke(db, clean)
    worker = workers("w1")

    def status():
        db.expire_all()
        return db.get(Job, job.id).status == JobStatus.SUCCEEDED

    wait_until(status, timeout=30, what="smoke job to succeed")
    db.expire_all()
    row = db.get(Job, job.id)
    assert row.percent == 100.0 and row.attempts == 1 and row.finished_at is not None
    events = db.scalars(select(ProgressEvent).where(ProgressEvent.job_id == job.id).order_by(ProgressEvent.id)).all()
    assert [e.iteration for e in events] == [1, 2, 3, 4]
    attempt = db.scalars(select(Attempt).where(Attempt.job_id == job.id)).one()
    assert attempt.status == AttemptStatus.SUCCEEDED and attempt.worker_name == "w1"
    assert worker.proc.poll() is None, worker.log()
