"""Queries on trained_configurations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, aliased

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


def best(
    session: Session, *, symbol: str, strategy: str | None, version: str | None = None
) -> TrainedConfiguration | None:
    """The highest validation score not flagged as overfitted, else the highest score, among
    one version of each strategy: `version` if given, else the version of the strategy's most
    recent configuration for the symbol (versions are never mixed)."""
    config = TrainedConfiguration
    stmt = _filtered(select(config), symbol, strategy)
    if version is not None:
        stmt = stmt.where(config.strategy_version == version)
    else:
        latest = aliased(TrainedConfiguration)
        newest = (
            select(latest.strategy_version)
            .where(latest.symbol == config.symbol, latest.strategy == config.strategy)
            .order_by(latest.created_at.desc(), latest.id)
            .limit(1)
            .correlate(config)
            .scalar_subquery()
        )
        stmt = stmt.where(config.strategy_version.is_not_distinct_from(newest))
    stmt = stmt.order_by(config.overfit.asc(), config.score.desc().nulls_last(), config.created_at.desc())
    return session.scalars(stmt.limit(1)).first()


def ids_for_jobs(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The configuration saved by each of these jobs, for those that saved one."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(TrainedConfiguration.job_id, TrainedConfiguration.id).where(TrainedConfiguration.job_id.in_(job_ids))
    ).all()
    return {job_id: config_id for job_id, config_id in rows}


def add(session: Session, **values: Any) -> None:
    """Insert one configuration (a succeeded training job's result)."""
    session.execute(insert(TrainedConfiguration).values(id=uuid.uuid4(), **values))


def for_job(session: Session, job_id: uuid.UUID) -> TrainedConfiguration | None:
    return session.scalars(select(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)).one_or_none()
