"""What the hot paths cost in round trips, counted on the suite's real PostgreSQL and Redis:
a start is two PostgreSQL round trips from the event loop (the candle check, then BEGIN, the
admission lock, the insert and COMMIT as one query string; one more, the key lookup, with an
Idempotency-Key; one fewer once the API keeps a check of the same candles, see
services/test_candle_checks.py) and one Redis round trip; a replay and a progress read are one statement and
no Redis; no path pings a pooled
connection, and a connection the server closed (as a PostgreSQL restart closes them all) is
replaced before use instead of failing the request. In a job process, a progress report is one
statement."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import pytest
from redis.connection import AbstractConnection
from sqlalchemy import event, func, select, update

from app.db import get_engine, libpq_url, sync_url
from app.execution.context import JobContext
from app.execution.errors import Fenced
from app.loop_pool import LoopPool
from app.models import Job, ProgressEvent
from app.repositories.jobs import ADMISSION_LOCK_KEY
from app.services import jobs as jobs_service
from app.services import lifecycle
from app.services.candles import KeptChecks
from app.services.dispatch import LoopWork
from tests.support import submit_smoke, wait_until

GOOD = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
pytestmark = pytest.mark.usefixtures("candles_1h")


@contextmanager
def round_trips(settings, monkeypatch) -> Iterator[Counter]:
    """Count, in this process, SQL statements, pre-use pings, commits and rollbacks on the
    app's engine; query strings sent from the event loop (`loop_sql`: on a connection of
    `app.loop_pool`, one round trip each); and Redis round trips (one per packet of commands
    sent: a pipeline is one)."""
    engine = get_engine(settings.database_url)
    seen: Counter = Counter()

    def statement(*_args) -> None:
        seen["sql"] += 1

    def commit(_conn) -> None:
        seen["commit"] += 1

    def rollback(_conn) -> None:
        seen["rollback"] += 1

    ping, send, read = engine.dialect.do_ping, AbstractConnection.send_packed_command, psycopg.AsyncCursor.execute

    def counted_ping(dbapi_connection):
        seen["ping"] += 1
        return ping(dbapi_connection)

    def counted_send(self, command, check_health=True):
        seen["redis"] += 1
        return send(self, command, check_health)

    async def counted_read(self, query, params=None, **kwargs):
        seen["loop_sql"] += 1
        return await read(self, query, params, **kwargs)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted_read)
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted_send)
    hooks = (("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback))
    for name, fn in hooks:
        event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for name, fn in hooks:
            event.remove(engine, name, fn)


def test_start_is_two_postgresql_round_trips_and_one_redis_round_trip(client, clean, redis, monkeypatch):
    # The first start of a process also asks Redis its version once (RQ keeps it per queue).
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    # A start whose candles were not checked yet.
    client.app.state.api = replace(client.app.state.api, candle_checks=KeptChecks())
    with round_trips(clean, monkeypatch) as seen:
        resp = client.post("/api/v2/training/start", json=GOOD)
    assert resp.status_code == 202, resp.text
    assert dict(seen) == {"loop_sql": 2, "redis": 1}, (
        "the candle check; BEGIN, the admission lock, the insert and COMMIT; one pipelined enqueue"
    )
    body = resp.json()
    assert body["status"] == "queued" and body["counted_attempts"] == 0 and body["configuration_id"] is None
    assert redis.lrange("rq:queue:training", 0, -1)[-1].decode().startswith(body["job_id"])


def test_start_with_a_key_adds_only_the_lookup_and_a_replay_touches_no_redis(client, clean, redis, monkeypatch):
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    headers = {"Idempotency-Key": "hot-path-1"}
    client.app.state.api = replace(client.app.state.api, candle_checks=KeptChecks())
    with round_trips(clean, monkeypatch) as first:
        created = client.post("/api/v2/training/start", json=GOOD, headers=headers)
    assert created.status_code == 202, created.text
    assert dict(first) == {"loop_sql": 3, "redis": 1}
    with round_trips(clean, monkeypatch) as again:
        replay = client.post("/api/v2/training/start", json=GOOD, headers=headers)
    assert replay.status_code == 200 and replay.json()["job_id"] == created.json()["job_id"]
    assert dict(again) == {"loop_sql": 1}, "the key lookup alone"
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 2}, headers=headers).status_code == 409
    assert redis.llen("rq:queue:training") == 2, "a replay sends nothing"


def test_queue_full_writes_nothing_and_sends_nothing(client, clean, redis, monkeypatch):
    client.app.state.settings = clean.model_copy(update={"max_queued_jobs": 1})
    assert client.post("/api/v2/training/start", json=GOOD).status_code == 202
    with round_trips(clean, monkeypatch) as seen:
        resp = client.post("/api/v2/training/start", json={**GOOD, "seed": 2})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
    assert seen["redis"] == 0
    assert redis.llen("rq:queue:training") == 1
    assert client.get("/api/v2/training/jobs").json()["total"] == 1, "the refused job was not written"


def test_progress_read_is_one_statement_on_the_event_loop_and_no_ping(client, clean, monkeypatch):
    job_id = client.post("/api/v2/training/start", json=GOOD).json()["job_id"]
    with round_trips(clean, monkeypatch) as seen:
        resp = client.get(f"/api/v2/training/jobs/{job_id}/progress")
    assert resp.status_code == 200 and resp.json()["status"] == "queued"
    assert dict(seen) == {"loop_sql": 1}, "one statement from the read pool; no engine, ping, commit or Redis"


def test_pooled_connections_closed_by_the_server_are_replaced_without_a_failed_request(client, clean, monkeypatch):
    """What a PostgreSQL restart does to every pooled connection, done to all of them at once:
    their server processes end. The next requests are answered; nothing pinged."""
    job_id = client.post("/api/v2/training/start", json=GOOD).json()["job_id"]
    for _ in range(3):
        assert client.get(f"/api/v2/training/jobs/{job_id}/progress").status_code == 200
    with psycopg.connect(sync_url(clean.database_url).replace("+psycopg", ""), autocommit=True) as admin:
        ended = [
            pid
            for pid, _ in admin.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        ]
        assert ended, "the app held pooled connections"
        wait_until(
            lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (ended,)).fetchone(),
            timeout=10,
            what="the terminated server processes to end",
        )
    with round_trips(clean, monkeypatch) as seen:
        for _ in range(3):
            resp = client.get(f"/api/v2/training/jobs/{job_id}/progress")
            assert resp.status_code == 200, resp.text
        assert client.post("/api/v2/training/start", json={**GOOD, "seed": 5}).status_code == 202
    assert seen["ping"] == 0


def client_backends(settings) -> set[int]:
    """The server processes of this database's client sessions, other than the asker's."""
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
    return {pid for (pid,) in rows}


def test_answers_of_404_409_422_and_429_keep_their_pooled_connections(client, clean, monkeypatch):
    """An ordinary refusal is not a broken connection: 20 progress reads of unknown jobs (404),
    20 starts refused by a full queue (429), 5 refused by their candles (422) and 5 replays of a
    key with another body (409) open no PostgreSQL session and close none."""
    client.app.state.settings = clean.model_copy(update={"max_queued_jobs": 1})
    # Earlier tests may leave this process's sync pool holding connections a simulated server
    # restart closed; each is (rightly) replaced when first taken. Start from an empty pool, so
    # the requests below measure only what a refusal does to the connections it uses.
    get_engine(clean.database_url).dispose()
    job_id = client.post("/api/v2/training/start", json=GOOD, headers={"Idempotency-Key": "k"}).json()["job_id"]
    assert client.get(f"/api/v2/training/jobs/{job_id}/progress").status_code == 200
    assert client.post("/api/v2/training/start", json={**GOOD, "symbol": "ETHUSDT"}).status_code == 422
    before = client_backends(clean)
    connects, connect = [], psycopg.AsyncConnection.connect

    async def counted_connect(*args, **kwargs):
        connects.append(1)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counted_connect)
    for _ in range(20):
        assert client.get(f"/api/v2/training/jobs/{uuid.uuid4()}/progress").status_code == 404
    for seed in range(20):
        resp = client.post("/api/v2/training/start", json={**GOOD, "seed": 100 + seed})
        assert resp.status_code == 429, resp.text
    for _ in range(5):
        assert client.post("/api/v2/training/start", json={**GOOD, "symbol": "ETHUSDT"}).status_code == 422
        resp = client.post("/api/v2/training/start", json={**GOOD, "seed": 7}, headers={"Idempotency-Key": "k"})
        assert resp.status_code == 409, resp.text
    assert len(connects) == 0, "no new connection to PostgreSQL"
    assert client_backends(clean) == before, "the same sessions, none closed and none opened"


def test_a_connection_left_in_a_transaction_or_mid_statement_is_closed(clean):
    """The pool keeps a connection an error left idle and closes one it left inside a
    transaction (or broken): its state is unknown."""
    pool = LoopPool(clean.database_url, 1)

    async def scenario() -> tuple[int, int, int, bool]:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
        with contextlib.suppress(LookupError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
                raise LookupError("an ordinary answer, e.g. 404")
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1/0")
        async with pool.connection() as conn:
            kept = conn.info.backend_pid
        with contextlib.suppress(LookupError):
            async with pool.connection() as conn:
                await conn.execute("BEGIN")
                left = conn
                raise LookupError("raised inside a transaction")
        async with pool.connection() as conn:
            replaced = conn.info.backend_pid
        await pool.close()
        return first, kept, replaced, left.closed

    first, kept, replaced, closed = asyncio.run(scenario())
    assert kept == first, "a failed statement in autocommit leaves the connection idle: kept"
    assert closed and replaced != first, "a connection inside a transaction is closed and replaced"


def test_a_start_cancelled_while_it_waits_for_the_admission_lock_leaves_nothing_behind(db, clean):
    """The client goes away while its admission waits for the lock: the query is cancelled in
    the server, its transaction is left failed, and the pool closes that connection rather than
    give it back. No row, no session idle in a transaction."""
    pool = LoopPool(clean.database_url, 1)
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    idle_in_transaction = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"
    )

    async def start(pids: list[int]) -> None:
        async with pool.connection() as conn:
            pids.append(conn.info.backend_pid)
            await jobs_service.start_from_loop(
                LoopWork(conn), clean, KeptChecks(), kind="smoke", priority="normal", params={}, idempotency_key=None
            )

    async def scenario() -> tuple[int, int, int]:
        pids: list[int] = []
        url = libpq_url(clean.database_url)
        with psycopg.connect(url, autocommit=True) as holder, psycopg.connect(url, autocommit=True) as watcher:
            holder.execute("BEGIN")
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK_KEY,))
            task = asyncio.create_task(start(pids))
            deadline = time.monotonic() + 10
            while watcher.execute(waiting).fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the admission never waited for the lock"
                await asyncio.sleep(0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            holder.execute("ROLLBACK")
            idle = watcher.execute(idle_in_transaction).fetchone()[0]
        async with pool.connection() as conn:
            after = conn.info.backend_pid
        await pool.close()
        return pids[0], after, idle

    before, after, idle = asyncio.run(scenario())
    assert after != before, "the connection left in a failed transaction was closed"
    assert idle == 0
    assert db.scalar(select(func.count()).select_from(Job)) == 0


def test_a_progress_report_is_one_statement_and_a_fenced_one_writes_nothing(db, clean, monkeypatch):
    """In the job process: the job row and the history row in one autocommitted statement."""
    job = submit_smoke(db, clean)
    claim = lifecycle.claim(db, job.id, "w1", 1)
    db.commit()
    ctx = JobContext(
        clean,
        job_id=job.id,
        kind="smoke",
        params={},
        attempt_id=claim.attempt.id,
        attempt_number=1,
        n_iterations=4,
        parent_pid=1,
    )
    with round_trips(clean, monkeypatch) as seen:
        ctx.progress(25.0, "smoke", "step 1 of 4", iteration=1)
    # Autocommit: no COMMIT; the pool's reset on return is a ROLLBACK psycopg does not send
    # when no transaction is open.
    assert (seen["sql"], seen["commit"], seen["ping"]) == (1, 0, 0), "one statement, no transaction around it"
    db.expire_all()
    assert (db.get(Job, job.id).percent, db.get(Job, job.id).iteration) == (25.0, 1)
    history = db.scalars(select(ProgressEvent).where(ProgressEvent.job_id == job.id)).all()
    assert [(e.attempt_id, e.percent, e.iteration, e.message) for e in history] == [
        (claim.attempt.id, 25.0, 1, "step 1 of 4")
    ]
    db.execute(update(Job).where(Job.id == job.id).values(current_attempt_id=None, status="queued"))
    db.commit()
    with pytest.raises(Fenced):
        ctx.progress(50.0, "smoke", "step 2 of 4", iteration=2)
    db.expire_all()
    assert db.get(Job, job.id).percent == 25.0
    assert db.scalar(select(func.count()).select_from(ProgressEvent).where(ProgressEvent.job_id == job.id)) == 1
