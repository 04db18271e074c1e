"""Queries on training_trials: the finished optimisation trials of a job."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.models import Trial


def for_job(session: Session, job_id: uuid.UUID) -> Sequence[Trial]:
    return session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all()


def add_once(session: Session, **values: Any) -> None:
    """Insert a trial; a trial number the job already has (an earlier attempt got that far) is
    kept as it is."""
    session.execute(
        pg_insert(Trial).values(**values).on_conflict_do_nothing(constraint="uq_training_trials_job_id_number")
    )
