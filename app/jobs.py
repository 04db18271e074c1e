"""RQ entrypoints. Their dotted paths are stored in Redis with every queued job: public API."""

from __future__ import annotations

from app.settings import get_settings


def run(job_id: str) -> str:
    """Run one attempt of the job `job_id` (a training_jobs id) in this job process."""
    from app.db import dispose_process_engines
    from app.execution import process
    from app.execution.runner import run_job

    try:
        return run_job(get_settings(), job_id, process.worker_name, process.parent())
    finally:
        dispose_process_engines()
