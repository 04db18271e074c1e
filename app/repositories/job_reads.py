"""The API's hot reads of training_jobs, sent by the driver from the event loop.

Each read is a SQLAlchemy statement compiled once, at import or at the first use of a filter
combination, to the driver's SQL; a request then sends it with its parameters on a connection of
`app.read_pool` and gets named tuples whose fields carry the names `presenters` reads (a job's
columns, `configuration_id`, `counted_attempts`). No session, no ORM objects, no statement built
per request. The ORM versions of the same lookups stay in `jobs.py` for the CLI and the services,
and the tests hold the two to the same answers.
"""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from app.models import Job, TrainedConfiguration
from app.repositories.jobs import counted_attempts

# The columns of a progress body (`presenters.progress_of` reads them by these names).
_PROGRESS_COLUMNS = (
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
_DIALECT = psycopg_dialect()
# Only to compile: a parameter needs a value of its type while the statement is compiled.
_ANY_ID = uuid.UUID(int=0)


def _compile(stmt: Select) -> tuple[str, dict]:
    """The driver's SQL for `stmt` and its constant parameters (e.g. the attempt statuses that
    count against the budget); a request adds its own."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


def _with_configuration(*extra) -> Select:
    return select(
        *_PROGRESS_COLUMNS,
        *extra,
        TrainedConfiguration.id.label("configuration_id"),
        counted_attempts().label("counted_attempts"),
    ).outerjoin(TrainedConfiguration, TrainedConfiguration.job_id == Job.id)


_PROGRESS = _compile(_with_configuration().where(Job.id == bindparam("job_id", _ANY_ID)))


async def read_progress(conn: AsyncConnection, job_id: uuid.UUID):
    """A job's progress columns with its configuration id and counted attempts (one primary-key
    lookup), or None."""
    sql, constants = _PROGRESS
    cursor = await conn.execute(sql, {**constants, "job_id": job_id})
    return await cursor.fetchone()


_pages: dict[tuple[bool, bool, bool], tuple[tuple[str, dict], tuple[str, dict]]] = {}


def _page_statements(status: bool, kind: bool, strategy: bool) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """The page query and the count for one combination of filters, compiled at first use."""
    key = (status, kind, strategy)
    if key not in _pages:
        filters = []
        if status:
            filters.append(Job.status == bindparam("status", "queued"))
        if kind:
            filters.append(Job.kind == bindparam("kind", "training"))
        if strategy:
            filters.append(Job.params["strategy"].astext == bindparam("strategy", "x"))
        page = (
            _with_configuration(Job.params, func.count().over().label("total"))
            .where(*filters)
            .order_by(Job.created_at.desc(), Job.id)
            .limit(bindparam("limit", 1))
            .offset(bindparam("offset", 0))
        )
        count = select(func.count()).select_from(Job).where(*filters)
        _pages[key] = (_compile(page), _compile(count))
    return _pages[key]


async def read_page(
    conn: AsyncConnection, *, status: str | None, kind: str | None, strategy: str | None, limit: int, offset: int
) -> tuple[list, int]:
    """A page of jobs, newest first (progress columns, `params`, configuration id and counted
    attempts) and the total: one query, the total riding along as a window count; only a page
    past the end needs a second."""
    (page_sql, page_constants), (count_sql, count_constants) = _page_statements(
        bool(status), bool(kind), bool(strategy)
    )
    given = {"status": status, "kind": kind, "strategy": strategy}
    filters = {k: str(v) for k, v in given.items() if v}  # str(): enums as their values
    page_params = {**page_constants, **filters, "limit": limit, "offset": offset}
    rows = await (await conn.execute(page_sql, page_params)).fetchall()
    if rows:
        return rows, rows[0].total
    total = await (await conn.execute(count_sql, {**count_constants, **filters})).fetchone()
    return [], total[0]
