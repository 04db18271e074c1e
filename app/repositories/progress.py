"""Queries on training_progress, the history of progress reports."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from app.models import Job, ProgressEvent
from app.repositories.jobs import owned


def record(session: Session, job_id: uuid.UUID, attempt_id: int, job_values: dict, event: dict[str, Any]) -> bool:
    """Write progress on the job row if this attempt still owns it, and the report's history
    row only then: one statement (`WITH updated AS (UPDATE … RETURNING) INSERT … SELECT`), so
    it is atomic without a transaction around it. False: fenced, nothing written."""
    updated = update(Job).where(owned(job_id, attempt_id)).values(**job_values).returning(Job.id).cte("updated")
    columns = ProgressEvent.__table__.c
    row = select(
        updated.c.id,
        literal(attempt_id, columns.attempt_id.type),
        *(literal(value, columns[key].type) for key, value in event.items()),
    )
    stmt = (
        insert(ProgressEvent)
        .from_select(["job_id", "attempt_id", *event], row)
        .returning(ProgressEvent.id)
        .add_cte(updated)
    )
    return session.execute(stmt).first() is not None
