"""The progress read and the list of jobs (`job_reads`: one compiled statement each, sent by the
driver on the event loop or under a Session) against an independent computation: the progress
body built from the ORM (the job, its counted attempts and its configuration id read apart),
over random jobs (any status, phase, figures with NaN and infinities, attempts in every status,
with and without a saved configuration); the page computed from the stored jobs, over random
jobs and filters."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.api import presenters
from app.api.routes.training import progress_view
from app.db import libpq_url, session_factory
from app.loop_pool import LoopPool
from app.models import Attempt, Job, TrainedConfiguration
from app.repositories import job_reads
from app.services.errors import NotFound
from app.status import BUDGET_ATTEMPT_STATUSES, AttemptStatus, JobStatus
from tests.support import reset

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
moments = st.none() | st.integers(0, 10**9).map(lambda s: EPOCH + timedelta(seconds=s, microseconds=s % 997))
figures = st.none() | st.floats(allow_nan=True, allow_infinity=True)
texts = st.none() | st.text(max_size=40)
small = st.none() | st.integers(0, 10_000)


def _jobs():
    return st.fixed_dictionaries(
        {
            "status": st.sampled_from(list(JobStatus)),
            "phase": texts.map(lambda t: t[:32] if t is not None else None),
            "percent": st.floats(0, 100),
            "message": texts,
            "iteration": small,
            "n_iterations": small,
            "best_score": figures,
            "eta_seconds": figures,
            "max_attempts": st.integers(1, 10),
            "resumed_from_iteration": small,
            "cancel_requested_at": moments,
            "not_before": moments,
            "started_at": moments,
            "finished_at": moments,
            "error_type": texts.map(lambda t: t[:120] if t is not None else None),
            "error_message": texts,
        }
    )


def _store(database_url: str, fields: dict, attempts: list[AttemptStatus], configured: bool) -> uuid.UUID:
    """A job with `fields` (kind and params default to a training job's), these attempts and,
    if `configured`, a saved configuration."""
    with session_factory(database_url)() as session, session.begin():
        clean_text = {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in fields.items()}
        defaults = {"kind": "training", "params": {"strategy": "sma_crossover"}}
        job = Job(**{**defaults, **clean_text}, attempts=len(attempts))
        session.add(job)
        session.flush()
        for number, status in enumerate(attempts, start=1):
            session.add(Attempt(job_id=job.id, number=number, status=status, worker_name="w"))
        if configured:
            session.add(_configuration(job.id))
        return job.id


def _configuration(job_id: uuid.UUID) -> TrainedConfiguration:
    return TrainedConfiguration(
        job_id=job_id,
        strategy="sma_crossover",
        symbol="BTCUSDT",
        timeframe="1h",
        params={},
        objective="sharpe",
        train_metrics={},
        validation_metrics={},
        seed=1,
        code_version="test",
    )


def _orm_body(database_url: str, job_id: uuid.UUID) -> dict:
    """The body from the ORM: the job, its configuration and its attempts loaded apart."""
    with session_factory(database_url)() as session:
        job = session.get(Job, job_id)
        configuration = session.scalar(select(TrainedConfiguration.id).where(TrainedConfiguration.job_id == job_id))
        statuses = session.scalars(select(Attempt.status).where(Attempt.job_id == job_id)).all()
        counted = sum(1 for s in statuses if s in BUDGET_ATTEMPT_STATUSES)
        return presenters.progress_of(job_reads.row_of(job, configuration, counted)).model_dump(mode="json")


async def _read_body(database_url: str, job_id: uuid.UUID) -> dict:
    pool = LoopPool(database_url, 2)
    try:
        return (await progress_view(pool, job_id)).model_dump(mode="json")
    finally:
        await pool.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=_jobs(),
    attempts=st.lists(st.sampled_from(list(AttemptStatus)), max_size=4),
    configured=st.booleans(),
)
def test_the_event_loop_read_matches_the_orm_body(clean, fields, attempts, configured):
    reset(clean)
    job_id = _store(clean.database_url, fields, attempts, configured)
    expected = _orm_body(clean.database_url, job_id)
    assert asyncio.run(_read_body(clean.database_url, job_id)) == expected
    if fields["best_score"] is not None and not math.isfinite(fields["best_score"]):
        assert expected["best_score"] is None, "a non-finite figure reads as null"


def test_an_unknown_job_is_not_found(clean):
    with pytest.raises(NotFound):
        asyncio.run(_read_body(clean.database_url, uuid.uuid4()))


def test_a_connection_the_server_closed_is_replaced_and_one_left_in_a_failed_transaction_is_not_reused(clean):
    """What a PostgreSQL restart does to an idle pooled connection (its server process ends),
    and a statement that fails inside a transaction: neither connection serves the next read
    (an error in autocommit leaves the connection healthy: tests/test_round_trips.py)."""
    job_id = _store(clean.database_url, {"status": JobStatus.QUEUED}, [], False)

    async def scenario() -> None:
        pool = LoopPool(clean.database_url, 1)
        try:
            async with pool.connection() as conn:
                first = conn.info.backend_pid
            with psycopg.connect(libpq_url(clean.database_url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            await asyncio.wait_for(_until_readable(conn), 10)
            assert (await progress_view(pool, job_id)).job_id == job_id
            async with pool.connection() as conn:
                second = conn.info.backend_pid
            assert second != first
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with pool.connection() as conn:
                    await conn.execute("BEGIN")
                    await conn.execute("SELECT 1 / 0")
            assert conn.closed
            async with pool.connection() as conn:
                assert conn.info.backend_pid not in (first, second)
        finally:
            await pool.close()

    asyncio.run(scenario())


async def _until_readable(conn: psycopg.AsyncConnection) -> None:
    """Wait until the terminated server process's goodbye has reached the socket."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.pgconn.socket, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(conn.pgconn.socket)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(
        st.tuples(
            st.sampled_from(list(JobStatus)),
            st.sampled_from(["training", "smoke"]),
            st.sampled_from(["sma_crossover", "rsi_reversion", None]),
            st.lists(st.sampled_from(list(AttemptStatus)), max_size=3),
            st.booleans(),
        ),
        max_size=12,
    ),
    status=st.none() | st.sampled_from(list(JobStatus)),
    kind=st.none() | st.sampled_from(["training", "smoke"]),
    strategy=st.none() | st.sampled_from(["sma_crossover", "rsi_reversion"]),
    limit=st.integers(1, 5),
    offset=st.integers(0, 14),
)
def test_a_page_is_the_filtered_jobs_newest_first_on_both_paths(clean, jobs, status, kind, strategy, limit, offset):
    """`job_reads.page` (a Session) and `read_page` (the event loop) send the same statement;
    both give the page and total computed here from the stored jobs, each with its
    configuration id and counted attempts, including a page past the end."""
    reset(clean)
    stored = []
    for n, (job_status, job_kind, job_strategy, attempt_statuses, configured) in enumerate(jobs):
        created_at = EPOCH + timedelta(minutes=n % 5)  # ties: ordered by id
        fields = {
            "kind": job_kind,
            "status": job_status,
            "params": {"strategy": job_strategy, "symbol": "BTCUSDT", "timeframe": "1h"} if job_strategy else {},
            "created_at": created_at,
            "started_at": EPOCH + timedelta(minutes=n) if job_status != JobStatus.QUEUED else None,
        }
        job_id = _store(clean.database_url, fields, attempt_statuses, configured)
        counted = sum(1 for a in attempt_statuses if a in BUDGET_ATTEMPT_STATUSES)
        stored.append((created_at, job_id, job_status, job_kind, job_strategy, configured, counted))
    matching = [
        j
        for j in stored
        if (status is None or j[2] == status) and (kind is None or j[3] == kind) and (strategy in (None, j[4]))
    ]
    matching.sort(key=lambda j: (-j[0].timestamp(), str(j[1])))
    expected = [(j[1], j[5], j[6]) for j in matching[offset : offset + limit]], len(matching)
    query = dict(status=status, kind=kind, strategy=strategy, limit=limit, offset=offset)

    def seen(rows: list, total: int) -> tuple[list, int]:
        return [(r.id, r.configuration_id is not None, r.counted_attempts) for r in rows], total

    with session_factory(clean.database_url)() as session:
        assert seen(*job_reads.page(session, **query)) == expected

    async def read() -> tuple[list, int]:
        pool = LoopPool(clean.database_url, 1)
        try:
            async with pool.connection() as conn:
                return seen(*await job_reads.read_page(conn, **query))
        finally:
            await pool.close()

    assert asyncio.run(read()) == expected
