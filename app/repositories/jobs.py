"""Queries on training_jobs. Functions take a Session; the caller owns the transaction. The
start's admission also runs on the event loop (`admit_from_loop`), with the same statements."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

from psycopg import AsyncClientCursor, AsyncConnection
from sqlalchemy import BigInteger, Integer, bindparam, exists, func, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from app.models import CandleRevision, Job
from app.repositories.compiled import Compiled, compile_statement
from app.status import JobStatus

ADMISSION_LOCK_KEY = 0x7472_6164_0001  # serialises admission against max_queued_jobs


def get(session: Session, job_id: uuid.UUID, *, for_update: bool = False) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: n for status, n in rows}


def count_queued(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)) or 0


# Every column a new job's row is written with (the timestamps are the server's).
_ADMITTED_COLUMNS = [c for c in Job.__table__.columns if c.server_default is None]


def _admit_statement():
    """Insert one job's row (every column a parameter) only while fewer than `max_queued` jobs
    are queued, its idempotency key (if any) is new and, when `candle_revision` is given, the
    candles are still at that revision. Always one row: the server's timestamps of the row
    written (null when none was), and whether the candles had moved from `candle_revision`
    (so a refusal says which it was: the candles moved, or the queue is full or the key taken).
    One statement: the count, the revision and the insert share one snapshot."""
    max_queued = bindparam("max_queued", type_=Integer)
    queued = select(func.count()).select_from(
        select(Job.id).where(Job.status == JobStatus.QUEUED).limit(max_queued).subquery()
    )
    # A start on a kept candle check gives the revision it was made at; any other passes None.
    candle_revision = bindparam("candle_revision", type_=BigInteger)
    current_revision = func.coalesce(select(CandleRevision.revision).where(CandleRevision.id == 1).scalar_subquery(), 0)
    state = select(queued.scalar_subquery().label("queued"), current_revision.label("revision")).cte("state")
    moved = candle_revision.is_not(None) & (state.c.revision != candle_revision)
    row = (
        select(*(bindparam(c.key, type_=c.type) for c in _ADMITTED_COLUMNS))
        .select_from(state)
        .where(state.c.queued < max_queued, ~moved)
    )
    table = Job.__table__  # a Core insert: the ORM would take a dict of parameters as a bulk insert
    inserted = (
        pg_insert(table)
        .from_select([c.key for c in _ADMITTED_COLUMNS], row)
        .on_conflict_do_nothing(index_elements=[table.c.idempotency_key])
        .returning(table.c.created_at, table.c.updated_at)
        .cte("inserted")
    )
    return select(inserted.c.created_at, inserted.c.updated_at, moved.label("candles_moved")).select_from(
        state.outerjoin(inserted, true())
    )


_ADMIT = _admit_statement()
_LOCK_ADMISSION = select(func.pg_advisory_xact_lock(ADMISSION_LOCK_KEY))


def _admission_transaction() -> Compiled:
    """BEGIN, the lock, the insert and COMMIT as one query string for the event loop
    (`admit_from_loop`): the same two statements, compiled once."""
    lock, insert = compile_statement(_LOCK_ADMISSION), compile_statement(_ADMIT)
    assert not lock.constants.keys() & insert.constants.keys()
    return Compiled(
        f"BEGIN; {lock.sql}; {insert.sql}; COMMIT",
        {**lock.constants, **insert.constants},
        {**lock.processors, **insert.processors},
    )


_ADMISSION_TRANSACTION = _admission_transaction()


def _admission_values(job: Job) -> dict:
    """The new row's values, each also set on `job` (every column loaded: nothing left for the
    ORM to fetch later)."""
    values = {c.key: getattr(job, c.key) for c in _ADMITTED_COLUMNS}
    for key, value in values.items():
        setattr(job, key, value)
    return values


def admit(session: Session, job: Job, max_queued: int) -> bool:
    """Take the admission lock, then insert the new job's row (every column set in `job`) in
    one statement that admits it only while fewer than `max_queued` jobs are queued and its
    idempotency key (if any) is new. The lock serialises admissions until the transaction
    ends, so the count stays true until the row is committed.
    True: inserted, and `job` is now the session's persistent row (with the server's
    timestamps). False: the queue is full, or the key was committed concurrently."""
    values = _admission_values(job)
    lock_admission(session)
    created_at, updated_at, _ = session.execute(
        _ADMIT, {**values, "max_queued": max_queued, "candle_revision": None}
    ).one()
    if created_at is None:
        return False
    job.created_at, job.updated_at = created_at, updated_at
    make_transient_to_detached(job)  # as if loaded: no flush, no further SQL
    session.add(job)
    return True


class Admission(enum.Enum):
    """What `admit_from_loop` did."""

    ADMITTED = "admitted"
    REFUSED = "refused"  # the queue is full, or the key was committed concurrently
    CANDLES_MOVED = "candles_moved"  # not at the kept check's revision: check them again


async def admit_from_loop(
    conn: AsyncConnection, job: Job, max_queued: int, *, candle_revision: int | None = None
) -> Admission:
    """`admit` and its commit on an autocommit connection of the event loop, in one round trip:
    BEGIN, the lock, the insert and COMMIT go to the server as one query string (parameters
    bound by the driver on the client, as the protocol allows several statements only in a
    simple query), so the lock is held for the server's work alone, never while the API gets
    round to sending the next statement. Each statement still takes its own snapshot, so the
    count under the lock sees every admission committed before it. With `candle_revision` (a
    kept candle check's) the row is written only while the candles are still at that revision,
    and a refusal for that reason is told apart from a full queue. ADMITTED: the row is
    committed (and `job` has the server's timestamps). A failure raises with nothing committed
    (and the connection in a failed transaction: the pool closes it)."""
    values = _admission_values(job)
    async with AsyncClientCursor(conn) as cursor:
        await cursor.execute(
            _ADMISSION_TRANSACTION.sql,
            _ADMISSION_TRANSACTION.params(**values, max_queued=max_queued, candle_revision=candle_revision),
        )
        cursor.nextset()  # BEGIN's result, then the lock's
        cursor.nextset()
        assert (cursor.statusmessage or "").startswith("SELECT"), cursor.statusmessage
        created_at, updated_at, candles_moved = await cursor.fetchone()
    if created_at is not None:
        job.created_at, job.updated_at = created_at, updated_at
        return Admission.ADMITTED
    return Admission.CANDLES_MOVED if candles_moved else Admission.REFUSED


def lock_admission(session: Session) -> None:
    """Serialise admissions until this transaction ends, so a count of queued jobs stays true
    until the new row is committed."""
    session.execute(_LOCK_ADMISSION)


def owned(job_id: uuid.UUID, attempt_id: int):
    """SQL: the job is running and this attempt owns it (`Job.owned_by`)."""
    return (Job.id == job_id) & Job.owned_by(attempt_id)


def is_owned(session: Session, job_id: uuid.UUID, attempt_id: int) -> bool:
    return bool(session.scalar(select(exists().where(owned(job_id, attempt_id)))))


def update_if_owned(session: Session, job_id: uuid.UUID, attempt_id: int, values: dict) -> bool:
    return session.execute(update(Job).where(owned(job_id, attempt_id)).values(**values)).rowcount == 1


def watch(session: Session, job_id: uuid.UUID):
    """What the worker watches of the job it runs: status, phase, percent, cancel request."""
    return session.execute(
        select(Job.status, Job.phase, Job.percent, Job.cancel_requested_at, Job.current_attempt_id).where(
            Job.id == job_id
        )
    ).one_or_none()


def stop_signals(session: Session, job_id: uuid.UUID, attempt_id: int):
    """For an attempt's check(): None if it no longer owns the job, else its cancel request."""
    return session.execute(select(Job.cancel_requested_at).where(owned(job_id, attempt_id))).one_or_none()


def count_by_kind_and_status(session: Session) -> list[tuple[str, str, int]]:
    rows = session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
    return [(kind, status, n) for kind, status, n in rows]


def oldest_queued_age_s(session: Session) -> float:
    age = session.scalar(
        select(func.coalesce(func.extract("epoch", func.now() - func.min(Job.created_at)), 0)).where(
            Job.status == JobStatus.QUEUED
        )
    )
    return float(age or 0)


def queued_dispatches(
    session: Session, now: datetime, enqueued_before: datetime, page: int = 1000
) -> Iterator[Sequence[tuple[uuid.UUID, str | None]]]:
    """Every queued row a worker may take now that was dispatched long enough ago (or never),
    as (id, rq_job_id), oldest first, in pages of `page` rows: one statement whose rows are
    fetched a page at a time (a server-side cursor), so one pass covers the whole queue however
    long it is without holding it all. Nothing is locked (see `lock_queued`)."""
    stmt = (
        select(Job.id, Job.rq_job_id)
        .where(Job.status == JobStatus.QUEUED)
        .where((Job.not_before.is_(None)) | (Job.not_before <= now))
        .where((Job.enqueued_at.is_(None)) | (Job.enqueued_at <= enqueued_before))
        .order_by(Job.created_at, Job.id)
        .execution_options(stream_results=True, max_row_buffer=page)
    )
    with session.connection().execute(stmt) as result:
        yield from result.partitions(page)


def lock_queued(session: Session, dispatches: Sequence[tuple[uuid.UUID, str | None]]) -> Sequence[Job]:
    """The rows of these (id, rq_job_id), locked, that are still queued with the same dispatch
    (not claimed, canceled or sent again since they were read), oldest first; rows another
    transaction holds are skipped."""
    wanted = dict(dispatches)
    stmt = (
        select(Job)
        .where(Job.id.in_(wanted), Job.status == JobStatus.QUEUED)
        .order_by(Job.created_at, Job.id)
        .with_for_update(skip_locked=True)
    )
    return [job for job in session.scalars(stmt) if job.rq_job_id == wanted[job.id]]
