"""The API's hot reads of training_jobs, sent by the driver from the event loop.

Each read is a SQLAlchemy statement compiled once (`compiled.py`), at import or at the first use
of a filter combination, to the driver's SQL; a request then sends it with its parameters on a connection of
`app.loop_pool` and gets named tuples whose fields carry the names `presenters` reads (a job's
columns, `configuration_id`, `counted_attempts`). No session, no ORM objects, no statement built
per request. The ORM versions of the same lookups stay in `jobs.py` for the CLI and the services,
and the tests hold the two to the same answers.
"""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from sqlalchemy import Select, bindparam, func, select

from app.models import Job, TrainedConfiguration
from app.repositories.compiled import Compiled, compile_statement
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
# Only to compile: a parameter needs a value of its type while the statement is compiled.
_ANY_ID = uuid.UUID(int=0)


def _with_configuration(*extra) -> Select:
    return select(
        *_PROGRESS_COLUMNS,
        *extra,
        TrainedConfiguration.id.label("configuration_id"),
        counted_attempts().label("counted_attempts"),
    ).outerjoin(TrainedConfiguration, TrainedConfiguration.job_id == Job.id)


_PROGRESS = compile_statement(_with_configuration().where(Job.id == bindparam("job_id", _ANY_ID)))
_BY_KEY = compile_statement(
    _with_configuration(Job.request_hash).where(Job.idempotency_key == bindparam("idempotency_key", "x"))
)


async def read_progress(conn: AsyncConnection, job_id: uuid.UUID):
    """A job's progress columns with its configuration id and counted attempts (one primary-key
    lookup), or None."""
    cursor = await conn.execute(_PROGRESS.sql, _PROGRESS.params(job_id=job_id))
    return await cursor.fetchone()


async def read_by_key(conn: AsyncConnection, idempotency_key: str):
    """The job a start with this `Idempotency-Key` created, as `read_progress` gives it plus its
    `request_hash`, or None."""
    cursor = await conn.execute(_BY_KEY.sql, _BY_KEY.params(idempotency_key=idempotency_key))
    return await cursor.fetchone()


_pages: dict[tuple[bool, bool, bool], tuple[Compiled, Compiled]] = {}


def _page_statements(status: bool, kind: bool, strategy: bool) -> tuple[Compiled, Compiled]:
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
        _pages[key] = (compile_statement(page), compile_statement(count))
    return _pages[key]


async def read_page(
    conn: AsyncConnection, *, status: str | None, kind: str | None, strategy: str | None, limit: int, offset: int
) -> tuple[list, int]:
    """A page of jobs, newest first (progress columns, `params`, configuration id and counted
    attempts) and the total: one query, the total riding along as a window count; only a page
    past the end needs a second."""
    page, count = _page_statements(bool(status), bool(kind), bool(strategy))
    given = {"status": status, "kind": kind, "strategy": strategy}
    filters = {k: str(v) for k, v in given.items() if v}  # str(): enums as their values
    rows = await (await conn.execute(page.sql, page.params(**filters, limit=limit, offset=offset))).fetchall()
    if rows:
        return rows, rows[0].total
    total = await (await conn.execute(count.sql, count.params(**filters))).fetchone()
    return [], total[0]
