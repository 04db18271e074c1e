"""Queries on training_progress, the history of progress reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import ProgressEvent


def add(session: Session, **values: Any) -> None:
    session.execute(insert(ProgressEvent).values(**values))
