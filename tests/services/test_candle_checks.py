"""The API keeps the candle checks of its starts (`KeptChecks`) with the candle revision they were
made at, and admits a job on a kept check only while the candles are still at that revision. A
change of candles after a check (a delete, an import that passes the bound) must send the next
start back to a fresh check: the kept check never outlives the candles it looked at."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from sqlalchemy import func, select, text

from app.db import libpq_url
from app.models import CandleRevision, Job
from app.services import candles as candles_service
from tests.test_round_trips import GOOD, round_trips

pytestmark = pytest.mark.usefixtures("candles_1h")


def revision(db) -> int:
    db.expire_all()
    return db.scalar(select(CandleRevision.revision).where(CandleRevision.id == 1))


def test_every_statement_that_changes_candles_raises_the_revision(db):
    before = revision(db)
    candles_service.generate_synthetic(db, "ETHUSDT", "1h", 10, seed=1)
    db.commit()
    assert revision(db) == before + 1, "an import is one statement"
    db.execute(text("UPDATE candles SET volume = volume + 1 WHERE symbol = 'ETHUSDT'"))
    db.commit()
    db.execute(text("DELETE FROM candles WHERE symbol = 'ETHUSDT'"))
    db.commit()
    assert revision(db) == before + 3
    db.execute(text("DELETE FROM candles WHERE symbol = 'nothing'"))  # a statement, even of no rows
    db.rollback()
    assert revision(db) == before + 3, "a change rolled back leaves the revision as it was"
    db.execute(text("TRUNCATE candles"))
    db.commit()
    assert revision(db) == before + 4


def test_a_second_start_on_the_same_candles_skips_the_check(client, clean, monkeypatch):
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    with round_trips(clean, monkeypatch) as seen:
        resp = client.post("/api/v2/training/start", json=GOOD)
    assert resp.status_code == 202, resp.text
    assert dict(seen) == {"loop_sql": 1, "redis": 1}, "BEGIN, lock, insert and COMMIT only; one enqueue"


def test_candles_deleted_after_a_kept_check_refuse_the_next_start(client, db, clean):
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    with psycopg.connect(libpq_url(clean.database_url), autocommit=True) as other:
        other.execute("DELETE FROM candles WHERE symbol = 'BTCUSDT'")
    resp = client.post("/api/v2/training/start", json=GOOD)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "symbol"] and "no candles stored for BTCUSDT" in resp.text
    assert db.scalar(select(func.count()).select_from(Job)) == 1, "the refused start wrote nothing"


def test_candles_imported_past_the_bound_after_a_kept_check_refuse_the_next_start(client, db, clean):
    client.app.state.settings = clean.model_copy(update={"max_bars_per_job": 400})
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    # 300 bars stored; 200 more, later in time, make the job's whole range 500 bars.
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 200, seed=2, start_ms=1_900_000_000_000)
    db.commit()
    resp = client.post("/api/v2/training/start", json=GOOD)
    assert resp.status_code == 422, resp.text
    assert "500 stored bars" in resp.text and "MAX_BARS_PER_JOB" in resp.text
    assert db.scalar(select(func.count()).select_from(Job)) == 1


def test_a_refused_check_is_not_kept(client, db):
    resp = client.post("/api/v2/training/start", json={**GOOD, "symbol": "ETHUSDT"})
    assert resp.status_code == 422
    candles_service.generate_synthetic(db, "ETHUSDT", "1h", 300, seed=3)
    db.commit()
    assert client.post("/api/v2/training/start", json={**GOOD, "symbol": "ETHUSDT"}).status_code == 202


def test_the_kept_checks_are_bounded_and_drop_the_least_recently_used():
    kept = candles_service.KeptChecks(size=2)
    check = candles_service.RequestCheck(problem=None, bars_to_load=300, revision=1)
    keys = [kept.key({"symbol": s, "timeframe": "1h"}, 10) for s in ("A", "B", "C")]
    kept.keep(keys[0], check)
    kept.keep(keys[1], check)
    assert kept.get(keys[0]) is check  # A is now the most recently used
    kept.keep(keys[2], check)
    assert kept.get(keys[1]) is None and kept.get(keys[0]) is check and kept.get(keys[2]) is check


def test_candles_changed_between_a_check_and_the_insert_check_again_and_admit(client, db, monkeypatch):
    """The insert finds the candles at another revision than the check it was given (a change
    committed in between): the start is checked again and admitted, not refused as a full queue."""
    real = candles_service.check_request_from_loop
    calls = []

    async def check_seen_before_a_change(conn, params, *, max_bars):
        check = await real(conn, params, max_bars=max_bars)
        calls.append(check.revision)
        return dataclasses.replace(check, revision=check.revision - 1) if len(calls) == 1 else check

    monkeypatch.setattr(candles_service, "check_request_from_loop", check_seen_before_a_change)
    resp = client.post("/api/v2/training/start", json=GOOD)
    assert resp.status_code == 202, resp.text
    assert len(calls) == 2, "checked, refused by the revision, checked again"
    assert db.scalar(select(func.count()).select_from(Job)) == 1


def test_a_full_queue_refuses_a_start_on_a_kept_check_with_one_admission(client, clean, monkeypatch):
    """While the queue is full, a start whose candle check is kept is refused by its admission
    alone: the refusal says the queue is full, so the candles are not checked again and the
    admission is not run a second time under the global lock."""
    client.app.state.settings = clean.model_copy(update={"max_queued_jobs": 1})
    assert client.post("/api/v2/training/start", json={**GOOD, "seed": 0}).status_code == 202
    sent, execute = [], psycopg.AsyncCursor.execute

    async def recorded(self, query, params=None, **kwargs):
        sent.append(query if isinstance(query, str) else query.as_string(self))
        return await execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recorded)
    for seed in range(10):
        resp = client.post("/api/v2/training/start", json={**GOOD, "seed": seed + 1})
        assert resp.status_code == 429, resp.text
    admissions = [q for q in sent if "pg_advisory_xact_lock" in q]
    assert (len(admissions), len(sent) - len(admissions)) == (10, 0), "one admission each, no candle check"
