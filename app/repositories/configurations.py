"""Queries on trained_configurations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import TrainedConfiguration


def get(session: Session, config_id: uuid.UUID) -> TrainedConfiguration | None:
    return session.get(TrainedConfiguration, config_id)


def _filtered(stmt, symbol: str | None, strategy: str | None):
    if symbol:
        stmt = stmt.where(TrainedConfiguration.symbol == symbol)
    if strategy:
        stmt = stmt.where(TrainedConfiguration.strategy == strategy)
    return stmt


def list_configurations(
    session: Session, *, symbol: str | None, strategy: str | None, limit: int, offset: int
) -> tuple[Sequence[TrainedConfiguration], int]:
    rows = session.scalars(
        _filtered(select(TrainedConfiguration), symbol, strategy)
        .order_by(TrainedConfiguration.created_at.desc(), TrainedConfiguration.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(_filtered(select(func.count()).select_from(TrainedConfiguration), symbol, strategy))
    return rows, total or 0


def best(session: Session, *, symbol: str, strategy: str | None) -> TrainedConfiguration | None:
    """The highest validation score not flagged as overfitted, else the highest score."""
    stmt = _filtered(select(TrainedConfiguration), symbol, strategy).order_by(
        TrainedConfiguration.overfit.asc(),
        TrainedConfiguration.score.desc().nulls_last(),
        TrainedConfiguration.created_at.desc(),
    )
    return session.scalars(stmt.limit(1)).first()
