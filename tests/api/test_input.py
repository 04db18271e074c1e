"""Bad input gets a clear 4xx naming the problem, and changes nothing."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.api.app import create_app
from app.api.deps import SessionDep
from app.api.errors import is_outage
from app.db import get_engine
from app.engine.candles import resample
from app.models import Job
from app.services import candles as candles_service
from app.status import JobStatus
from tests.support import TOKEN

GOOD = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
pytestmark = pytest.mark.usefixtures("candles_1h")  # enough bars for GOOD to be accepted


def job_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"strategy": "nope"}, "strategy"),
        ({"n_iterations": 0}, "n_iterations"),
        ({"n_iterations": 100000}, "n_iterations"),
        ({"n_iterations": "10"}, "n_iterations"),
        ({"timeframe": "7m"}, "timeframe"),
        ({"symbol": "btc/usdt"}, "symbol"),
        ({"seed": -1}, "seed"),
        ({"priority": "urgent"}, "priority"),
        ({"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "end must be after start"),
        ({"start": "yesterday"}, "start"),
        ({"unexpected": 1}, "unexpected"),
        ({"strategy": None}, "strategy"),
    ],
)
def test_invalid_start_is_422_naming_the_field(client, db, change, field):
    body = {**GOOD, **change}
    resp = client.post("/api/v2/training/start", json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    assert job_count(db) == 0


@pytest.mark.parametrize("missing", ["strategy", "symbol", "timeframe"])
def test_missing_field_is_422(client, db, missing):
    body = {k: v for k, v in GOOD.items() if k != missing}
    resp = client.post("/api/v2/training/start", json=body)
    assert resp.status_code == 422 and missing in resp.text
    assert job_count(db) == 0


def test_not_json_and_oversize_bodies(client, db):
    assert (
        client.post(
            "/api/v2/training/start", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )
    big = {**GOOD, "strategy": "x" * 100_000}
    resp = client.post("/api/v2/training/start", json=big)
    assert resp.status_code == 413 and "bytes" in resp.json()["detail"]
    assert client.post("/api/v2/training/start", json=GOOD, headers={"Idempotency-Key": "k" * 201}).status_code == 422
    assert job_count(db) == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_missing_or_invalid_token_is_401(anon_client, db, header):
    headers = {"Authorization": header} if header else {}
    for method, path in [
        ("post", "/api/v2/training/start"),
        ("get", "/api/v2/training/jobs"),
        ("get", f"/api/v2/training/jobs/{uuid.uuid4()}/progress"),
        ("get", "/api/v2/training/queue"),
        ("delete", f"/api/v2/training/jobs/{uuid.uuid4()}"),
    ]:
        kwargs = {"json": GOOD} if method == "post" else {}
        resp = getattr(anon_client, method)(path, headers=headers, **kwargs)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"
    assert job_count(db) == 0


def test_unknown_and_malformed_ids(client):
    unknown = uuid.uuid4()
    for method, path in [
        ("get", f"/api/v2/training/jobs/{unknown}"),
        ("get", f"/api/v2/training/jobs/{unknown}/progress"),
        ("delete", f"/api/v2/training/jobs/{unknown}"),
        ("post", f"/api/v2/training/jobs/{unknown}/retry"),
    ]:
        resp = getattr(client, method)(path)
        assert resp.status_code == 404 and str(unknown) in resp.json()["detail"]
    assert client.get("/api/v2/training/jobs/not-a-uuid/progress").status_code == 422


def test_list_filters_and_validates(client, db):
    client.post("/api/v2/training/start", json=GOOD)
    assert client.get("/api/v2/training/jobs", params={"status": JobStatus.QUEUED}).json()["total"] == 1
    assert client.get("/api/v2/training/jobs", params={"status": JobStatus.RUNNING}).json()["total"] == 0
    assert client.get("/api/v2/training/jobs", params={"status": "bogus"}).status_code == 422
    assert client.get("/api/v2/training/jobs", params={"limit": 0}).status_code == 422
    assert client.get("/api/v2/training/jobs", params={"limit": "many"}).status_code == 422


def test_cancel_queued_then_finished_is_409_and_retry_rules(client, db, redis):
    job_id = client.post("/api/v2/training/start", json=GOOD).json()["job_id"]
    assert redis.llen("rq:queue:training") == 1
    resp = client.delete(f"/api/v2/training/jobs/{job_id}")
    assert resp.status_code == 202 and resp.json()["status"] == JobStatus.CANCELED
    assert redis.llen("rq:queue:training") == 0, "cancel of a queued job takes it out of Redis"
    again = client.delete(f"/api/v2/training/jobs/{job_id}")
    assert again.status_code == 409 and JobStatus.CANCELED in again.json()["detail"]
    retried = client.post(f"/api/v2/training/jobs/{job_id}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == JobStatus.QUEUED
    assert client.post(f"/api/v2/training/jobs/{job_id}/retry").status_code == 409


def test_queue_full_is_429_with_retry_after(client, db, clean):
    client.app.state.settings = clean.model_copy(update={"max_queued_jobs": 2})
    for seed in range(2):
        assert client.post("/api/v2/training/start", json={**GOOD, "seed": seed}).status_code == 202
    resp = client.post("/api/v2/training/start", json={**GOOD, "seed": 9})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
    assert job_count(db) == 2


def test_health_and_queue(client, anon_client):
    assert anon_client.get("/healthz").json() == {"status": "ok"}
    ready = anon_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}
    client.post("/api/v2/training/start", json={**GOOD, "priority": "high"})
    q = client.get("/api/v2/training/queue").json()
    assert q["depth"] == {"high": 1, "normal": 0, "low": 0} and q["queued"] == 1 and q["redis_ok"] is True


def test_cancel_of_a_queued_job_whose_dispatch_redis_lost(client, db, redis):
    job_id = client.post("/api/v2/training/start", json=GOOD).json()["job_id"]
    redis.flushall()
    resp = client.delete(f"/api/v2/training/jobs/{job_id}")
    assert resp.status_code == 202 and resp.json()["status"] == JobStatus.CANCELED


def test_metrics_in_prometheus_format(client, anon_client):
    client.post("/api/v2/training/start", json=GOOD)
    body = anon_client.get("/metrics")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    text = body.text
    assert 'trad_jobs{kind="training",status="queued"} 1.0' in text
    assert 'trad_queue_depth{priority="normal"} 1.0' in text
    assert "trad_postgres_up 1.0" in text and "trad_redis_up 1.0" in text


def raw_start(client, body: str, **headers):
    return client.post(
        "/api/v2/training/start", content=body.encode(), headers={"Content-Type": "application/json", **headers}
    )


BASE = '"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h"'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"strategy": "\\ud800", "symbol": "BTCUSDT", "timeframe": "1h"}', "strategy"),
        ('{"strategy": "sma_crossover", "symbol": "BTC\\udfffUSDT", "timeframe": "1h"}', "symbol"),
        ("{" + BASE + ', "\\ud800": 1}', "body"),
        ("{" + BASE + ', "holdout_fraction": NaN}', "holdout_fraction"),
        ("{" + BASE + ', "holdout_fraction": Infinity}', "holdout_fraction"),
        ("{" + BASE + ', "holdout_fraction": -Infinity}', "holdout_fraction"),
        ("{" + BASE + ', "holdout_fraction": 1e999}', "holdout_fraction"),
        ("{" + BASE + ', "n_iterations": NaN}', "n_iterations"),
        ("{" + BASE + ', "seed": 99999999999999999999999}', "seed"),
        ("{" + BASE + ', "start": "0001-01-01T00:00:00+01:00"}', "start"),
        ("{" + BASE + ', "end": "9999-12-31T23:59:59-10:00"}', "end"),
    ],
)
def test_unencodable_and_non_finite_input_is_422(client, db, body, field):
    resp = raw_start(client, body)
    assert resp.status_code == 422, resp.text
    errors = resp.json()["detail"]
    assert any(field in json.dumps(e["loc"]) for e in errors), errors
    assert job_count(db) == 0


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v2/training/jobs", {"offset": "99999999999999999999999"}, "offset"),
        ("/api/v2/training/jobs", {"limit": "99999999999999999999999"}, "limit"),
        ("/api/v2/training/jobs", {"kind": "\x00"}, "kind"),
        ("/api/v2/training/jobs", {"kind": "nope"}, "kind"),
        ("/api/v2/training/configurations", {"offset": "99999999999999999999999"}, "offset"),
        ("/api/v2/training/configurations", {"strategy": "a\x00b"}, "strategy"),
    ],
)
def test_absurd_query_values_are_422_not_an_outage(client, path, params, field):
    resp = client.get(path, params=params)
    assert resp.status_code == 422, resp.text
    assert any(field in e["loc"] for e in resp.json()["detail"])


def test_idempotency_key_must_be_printable(client, db):
    resp = client.post("/api/v2/training/start", json=GOOD, headers={"Idempotency-Key": "a b"})
    assert resp.status_code == 422 and "Idempotency-Key" in resp.text
    assert job_count(db) == 0


def test_database_errors_are_outages_only_when_postgresql_is_unreachable(settings):
    with pytest.raises(SQLAlchemyError) as value_error, get_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1 OFFSET 99999999999999999999999"))
    assert not is_outage(value_error.value)
    with pytest.raises(SQLAlchemyError) as refused:
        get_engine("postgresql://nobody@127.0.0.1:1/nothing").connect()
    assert isinstance(refused.value, DBAPIError) and is_outage(refused.value)


def test_unexpected_errors_are_500_with_a_logged_request_id(settings, caplog):
    app = create_app(settings)

    def divide(session: SessionDep) -> dict:
        return {"x": session.scalar(text("SELECT 1 / 0"))}

    app.get("/api/v2/training/divide", dependencies=[Depends(divide)])(lambda: {})
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        with caplog.at_level(logging.ERROR, logger="app.api.errors"):
            resp = c.get("/api/v2/training/divide")
        assert resp.status_code == 500, resp.text
        request_id = resp.json()["request_id"]
        assert resp.headers["x-request-id"] == request_id
        assert "PostgreSQL" not in resp.text, "a query error is not an outage"
        assert any(getattr(r, "request_id", None) == request_id for r in caplog.records)
        assert c.get("/healthz").headers["x-request-id"]


def test_coverage_is_checked_at_submit(client, db):
    resp = client.post("/api/v2/training/start", json={**GOOD, "symbol": "ETHUSDT"})
    assert resp.status_code == 422
    [error] = resp.json()["detail"]
    assert error["loc"] == ["body", "symbol"] and "no candles stored for ETHUSDT" in error["msg"]

    resp = client.post("/api/v2/training/start", json={**GOOD, "start": "9999-12-31T23:59:59Z"})
    assert resp.status_code == 422
    [error] = resp.json()["detail"]
    assert error["loc"] == ["body", "start"]
    assert "in the requested range" in error["msg"] and "1h from 2023-01-01T00:00Z to 2023-01-13T11:00Z" in error["msg"]

    resp = client.post("/api/v2/training/start", json={**GOOD, "timeframe": "4h"})
    [error] = resp.json()["detail"]
    assert resp.status_code == 422 and error["loc"] == ["body", "timeframe"] and "4h" in error["msg"]
    assert job_count(db) == 0
    assert client.post("/api/v2/training/start", json=GOOD).status_code == 202


def test_coverage_counts_resampled_bars_as_the_engine_does(client, db):
    candles_service.generate_synthetic(db, "SOLUSDT", "1m", 3_000, seed=4, start_ms=1_700_000_123_000)
    db.commit()
    expected = len(resample(candles_service.load(db, "SOLUSDT", "1m", None, None), "1h"))
    resp = client.post("/api/v2/training/start", json={**GOOD, "symbol": "SOLUSDT", "timeframe": "1h"})
    assert resp.status_code == 422
    [error] = resp.json()["detail"]
    assert error["loc"] == ["body", "timeframe"]
    assert f"{expected} 1h bars of SOLUSDT in the requested range is too few to train on (need 200)" in error["msg"]
    assert (
        client.post("/api/v2/training/start", json={**GOOD, "symbol": "SOLUSDT", "timeframe": "5m"}).status_code == 202
    )


# -- costs per job ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fee_bps": "10"}, "fee_bps"),
        ({"fee_bps": True}, "fee_bps"),
        ({"fee_bps": -1}, "fee_bps"),
        ({"fee_bps": 1000.5}, "fee_bps"),
        ({"fee_bps": [10]}, "fee_bps"),
        ({"slippage_bps": "2"}, "slippage_bps"),
        ({"slippage_bps": -0.01}, "slippage_bps"),
        ({"slippage_bps": 5000}, "slippage_bps"),
    ],
)
def test_bad_costs_are_422_naming_the_field_and_write_nothing(client, db, change, field):
    resp = client.post("/api/v2/training/start", json={**GOOD, **change})
    assert resp.status_code == 422, resp.text
    assert [e["loc"][-1] for e in resp.json()["detail"]] == [field]
    assert job_count(db) == 0


def test_costs_named_are_kept_and_costs_left_out_come_from_the_settings(clean, db):
    settings = clean.model_copy(update={"default_fee_bps": 4.5, "default_slippage_bps": 0.5})
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        named = client.post("/api/v2/training/start", json={**GOOD, "fee_bps": 0, "slippage_bps": 1000})
        left_out = client.post("/api/v2/training/start", json=GOOD)
        one = client.post("/api/v2/training/start", json={**GOOD, "slippage_bps": 0})
    assert [r.status_code for r in (named, left_out, one)] == [202, 202, 202]
    stored = {r.json()["job_id"]: None for r in (named, left_out, one)}
    for job_id in stored:
        stored[job_id] = db.get(Job, uuid.UUID(job_id)).params
    params = list(stored.values())
    assert (params[0]["fee_bps"], params[0]["slippage_bps"]) == (0, 1000)
    assert (params[1]["fee_bps"], params[1]["slippage_bps"]) == (4.5, 0.5)
    assert (params[2]["fee_bps"], params[2]["slippage_bps"]) == (4.5, 0)


def test_a_key_used_before_costs_could_be_named_replays_its_body(client, db):
    """A body that names no costs hashes as the release before this one hashed it (its params
    then had no costs), so its Idempotency-Key still replays; naming costs is another body."""
    from app.services.jobs import request_hash

    before = {
        **GOOD,
        "start": None,
        "end": None,
        "objective": "sharpe",
        "holdout_fraction": 0.2,
        "folds": 0,
        "min_trades": None,
        "validation": {"mode": "holdout", "windows": 5, "anchored": False},
    }
    first = client.post("/api/v2/training/start", json=GOOD, headers={"Idempotency-Key": "from-before"})
    assert first.status_code == 202, first.text
    job = db.get(Job, uuid.UUID(first.json()["job_id"]))
    assert job.request_hash == request_hash("training", "normal", before)
    again = client.post("/api/v2/training/start", json=GOOD, headers={"Idempotency-Key": "from-before"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    other = client.post(
        "/api/v2/training/start", json={**GOOD, "fee_bps": 10}, headers={"Idempotency-Key": "from-before"}
    )
    assert other.status_code == 409
    assert job_count(db) == 1
