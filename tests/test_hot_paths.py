"""What the hot paths cost in round trips, counted on the suite's real PostgreSQL and Redis:
a start is two PostgreSQL round trips from the event loop (the candle check, then BEGIN, the
admission lock, the insert and COMMIT as one query string; one more, the key lookup, with an
Idempotency-Key; one fewer once the API keeps a check of the same candles, see
test_kept_candle_checks.py) and one Redis round trip; a replay and a progress read are one statement and
no Redis; no path pings a pooled
connection, and a connection the server closed (as a PostgreSQL restart closes them all) is
replaced before use instead of failing the request. In a job process, a progress report is one
statement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from redis.connection import AbstractConnection
from sqlalchemy import event, func, select, update

from app.db import get_engine, sync_url
from app.execution.context import JobContext
from app.execution.errors import Fenced
from app.models import Job, ProgressEvent
from app.services import lifecycle
from app.services.candles import KeptChecks
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
    client.app.state.candle_checks = KeptChecks()  # a start whose candles were not checked yet
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
    client.app.state.candle_checks = KeptChecks()
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
