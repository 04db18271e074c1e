"""The reads of a job with its configuration id and counted attempts: the only definition of
each, for the event loop and for a Session alike.

Each read is a SQLAlchemy statement compiled once (`compiled.py`), at import or at the first use
of a filter combination, to the driver's SQL. The API sends it from the event loop on a
connection of `app.loop_pool` (`read_*`, async); the CLI, the cancel and retry answers and the
sync start send the same SQL through the driver under their Session's connection (`progress`,
`by_key`, `page`). Both get named tuples whose fields carry the names `presenters` reads: the
`PROGRESS_COLUMNS`, `configuration_id` and `counted_attempts` (a page adds `params`). No ORM
objects, no statement built per request.
"""

from __future__ import annotations

import uuid
from collections import namedtuple
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from app.models import Attempt, Job, TrainedConfiguration
from app.repositories.compiled import Compiled, compile_statement
from app.status import BUDGET_ATTEMPT_STATUSES, JobStatus

# The columns of a progress body: the one list (`presenters` maps them to the body's fields,
# `schemas.Progress` is checked against it, `progress_line` renders them).
PROGRESS_COLUMNS = (
    Job.id,
    Job.kind,
    Job.status,
    Job.phase,
    Job.percent,
    Job.message,
    Job.iteration,
    Job.n_iterations,
    Job.best_score,
    Job.eta_seconds,
    Job.attempts,
    Job.max_attempts,
    Job.resumed_from_iteration,
    Job.cancel_requested_at,
    Job.not_before,
    Job.created_at,
    Job.started_at,
    Job.updated_at,
    Job.finished_at,
    Job.error_type,
    Job.error_message,
)
# A row of `progress`, built from a job in hand (a start's new job: no configuration, no attempt).
ProgressRow = namedtuple("ProgressRow", [c.key for c in PROGRESS_COLUMNS] + ["configuration_id", "counted_attempts"])
# Only to compile: a parameter needs a value of its type while the statement is compiled.
_ANY_ID = uuid.UUID(int=0)


def row_of(job: Job, configuration_id: uuid.UUID | None = None, counted_attempts: int = 0) -> ProgressRow:
    """The progress row of a job already in memory, as `progress` would read it."""
    return ProgressRow(*(getattr(job, c.key) for c in PROGRESS_COLUMNS), configuration_id, counted_attempts)


def _counted_attempts():
    return (
        select(func.count())
        .where(Attempt.job_id == Job.id, Attempt.status.in_(BUDGET_ATTEMPT_STATUSES))
        .correlate(Job)
        .scalar_subquery()
    )


def _with_configuration(*extra) -> Select:
    return select(
        *PROGRESS_COLUMNS,
        *extra,
        TrainedConfiguration.id.label("configuration_id"),
        _counted_attempts().label("counted_attempts"),
    ).outerjoin(TrainedConfiguration, TrainedConfiguration.job_id == Job.id)


_PROGRESS = compile_statement(_with_configuration().where(Job.id == bindparam("job_id", _ANY_ID)))
_BY_KEY = compile_statement(
    _with_configuration(Job.request_hash).where(Job.idempotency_key == bindparam("idempotency_key", "x"))
)


def _run(session: Session, statement: Compiled, **values: Any) -> list:
    """Send a compiled statement through the driver on the Session's connection (in its
    transaction): the event loop's SQL, the same rows."""
    driver = session.connection().connection.driver_connection
    with driver.cursor(row_factory=namedtuple_row) as cursor:
        cursor.execute(statement.sql, statement.params(**values))
        return cursor.fetchall()


async def _run_async(conn: AsyncConnection, statement: Compiled, **values: Any) -> list:
    cursor = await conn.execute(statement.sql, statement.params(**values))
    return await cursor.fetchall()


def _one(rows: list):
    return rows[0] if rows else None


async def read_progress(conn: AsyncConnection, job_id: uuid.UUID):
    """A job's progress columns with its configuration id and counted attempts (one primary-key
    lookup), or None."""
    return _one(await _run_async(conn, _PROGRESS, job_id=job_id))


def progress(session: Session, job_id: uuid.UUID):
    """`read_progress` under a Session."""
    return _one(_run(session, _PROGRESS, job_id=job_id))


async def read_by_key(conn: AsyncConnection, idempotency_key: str):
    """The job a start with this `Idempotency-Key` created, as `read_progress` gives it plus its
    `request_hash`, or None."""
    return _one(await _run_async(conn, _BY_KEY, idempotency_key=idempotency_key))


def by_key(session: Session, idempotency_key: str):
    """`read_by_key` under a Session."""
    return _one(_run(session, _BY_KEY, idempotency_key=idempotency_key))


_pages: dict[tuple[bool, bool, bool], tuple[Compiled, Compiled]] = {}


def _page_statements(status: bool, kind: bool, strategy: bool) -> tuple[Compiled, Compiled]:
    """The page query and the count for one combination of filters, compiled at first use."""
    key = (status, kind, strategy)
    if key not in _pages:
        filters = []
        if status:
            filters.append(Job.status == bindparam("status", JobStatus.QUEUED.value))
        if kind:
            filters.append(Job.kind == bindparam("kind", "x"))
        if strategy:
            filters.append(Job.params["strategy"].astext == bindparam("strategy", "x"))
        page = (
            _with_configuration(Job.params, func.count().over().label("total"))
            .where(*filters)
            .order_by(Job.created_at.desc(), Job.id)
            .limit(bindparam("limit", 1))
            .offset(bindparam("offset", 0))
        )
        count = select(func.count().label("total")).select_from(Job).where(*filters)
        _pages[key] = (compile_statement(page), compile_statement(count))
    return _pages[key]


def _page_values(status: str | None, kind: str | None, strategy: str | None) -> dict[str, str]:
    given = {"status": status, "kind": kind, "strategy": strategy}
    return {k: str(v) for k, v in given.items() if v}  # str(): enums as their values


async def read_page(
    conn: AsyncConnection, *, status: str | None, kind: str | None, strategy: str | None, limit: int, offset: int
) -> tuple[list, int]:
    """A page of jobs, newest first (progress columns, `params`, configuration id and counted
    attempts) and the total: one query, the total riding along as a window count; only a page
    past the end needs a second."""
    page, count = _page_statements(bool(status), bool(kind), bool(strategy))
    filters = _page_values(status, kind, strategy)
    rows = await _run_async(conn, page, **filters, limit=limit, offset=offset)
    if rows:
        return rows, rows[0].total
    return [], (await _run_async(conn, count, **filters))[0].total


def page(
    session: Session, *, status: str | None, kind: str | None, strategy: str | None, limit: int, offset: int
) -> tuple[list, int]:
    """`read_page` under a Session."""
    statement, count = _page_statements(bool(status), bool(kind), bool(strategy))
    filters = _page_values(status, kind, strategy)
    rows = _run(session, statement, **filters, limit=limit, offset=offset)
    if rows:
        return rows, rows[0].total
    return [], _run(session, count, **filters)[0].total
