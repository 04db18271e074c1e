"""Bad input to `POST /api/v2/candles/refresh`, `GET /api/v2/candles` and a schedule's
`refresh`: a 4xx naming the field, and nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import Job, Schedule
from app.repositories import candles as candles_repo
from app.services import candles as candles_service

REFRESH = "/api/v2/candles/refresh"
GOOD = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "since": "2024-01-01T00:00:00Z"}
TEMPLATE = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "lookback": "30d"}


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"exchange": "binanse"}, "binanse"),
        ({"exchange": "BINANCE"}, "exchange"),
        ({"exchange": 7}, "exchange"),
        ({"exchange": "x" * 41}, "exchange"),
        ({"symbol": "BTCUSDT"}, "symbol"),
        ({"symbol": "BTC/USDT/ETH"}, "symbol"),
        ({"symbol": ["BTC/USDT"]}, "symbol"),
        ({"symbol": "B" * 30 + "/" + "U" * 60}, "symbol"),
        ({"timeframe": "7m"}, "timeframe"),
        ({"timeframe": None}, "timeframe"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2999-01-01T00:00:00Z"}, "since"),
        ({"since": "1960-01-01T00:00:00Z"}, "must be between 1970-01-01"),
        ({"until": "2023-01-01T00:00:00Z"}, "until"),
        ({"as": "btc-usdt"}, "as"),
        ({"priority": "urgent"}, "priority"),
        ({"limit": 5}, "limit"),
    ],
)
def test_invalid_refresh_is_422_naming_the_field(client, db, change, field):
    resp = client.post(REFRESH, json={**GOOD, **change})
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    assert count(db, Job) == 0


@pytest.mark.parametrize("missing", ["exchange", "symbol", "timeframe"])
def test_missing_field_is_422(client, db, missing):
    resp = client.post(REFRESH, json={k: v for k, v in GOOD.items() if k != missing})
    assert resp.status_code == 422 and missing in resp.text
    assert count(db, Job) == 0


def test_nothing_stored_and_no_since_and_synthetic_candles_are_refused(client, db):
    resp = client.post(REFRESH, json={k: v for k, v in GOOD.items() if k != "since"})
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "since"]
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 300, seed=1)
    db.commit()
    resp = client.post(REFRESH, json=GOOD)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "as"] and "synthetic" in resp.text
    assert client.post(REFRESH, json={**GOOD, "as": "BTCUSDTX"}).status_code == 202
    assert count(db, Job) == 1


def test_not_json_oversize_and_no_token(client, anon_client, db):
    assert client.post(REFRESH, content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post(REFRESH, json={**GOOD, "pad": "x" * 70_000}).status_code == 413
    assert anon_client.post(REFRESH, json=GOOD).status_code == 401
    assert anon_client.post(REFRESH, json=GOOD, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert anon_client.get("/api/v2/candles").status_code == 401
    assert client.post(REFRESH, json=GOOD, headers={"Idempotency-Key": "has space"}).status_code == 422
    assert count(db, Job) == 0


def test_candles_lists_each_series_with_its_sources(client, db):
    assert client.get("/api/v2/candles").json() == {"items": []}
    candles_repo.insert(
        db, "ETHUSDT", "1h", [(0, 1.0, 2.0, 0.5, 1.5, 1.0), (3_600_000, 1.0, 2.0, 0.5, 1.5, 1.0)], "import"
    )
    candles_repo.insert(db, "ETHUSDT", "1h", [(7_200_000, 1.0, 2.0, 0.5, 1.5, 1.0)], "kraken")
    db.commit()
    [series] = client.get("/api/v2/candles").json()["items"]
    assert series == {
        "symbol": "ETHUSDT",
        "timeframe": "1h",
        "first": "1970-01-01T00:00:00Z",
        "last": "1970-01-01T02:00:00Z",
        "bars": 3,
        "sources": ["import", "kraken"],
        "last_refresh_at": None,
    }


@pytest.mark.parametrize(
    ("refresh", "field"),
    [
        (True, "refresh"),
        ("binance", "refresh"),
        ({"exchange": "binanse", "symbol": "BTC/USDT"}, "binanse"),
        ({"exchange": "binance"}, "symbol"),
        ({"exchange": "binance", "symbol": "BTCUSDT"}, "symbol"),
        ({"exchange": "binance", "symbol": "BTC/USDT", "since": "2024-01-01"}, "since"),
    ],
)
def test_a_schedules_refresh_is_checked_at_create_and_patch(client, db, refresh, field):
    created = client.post(
        "/api/v2/training/schedules",
        json={"name": "bad", "cron": "0 * * * *", "template": {**TEMPLATE, "refresh": refresh}},
    )
    assert created.status_code == 422, created.text
    assert created.json()["detail"][0]["loc"][:3] == ["body", "template", "refresh"] and field in created.text
    assert count(db, Schedule) == 0
    good = client.post("/api/v2/training/schedules", json={"name": "good", "cron": "0 * * * *", "template": TEMPLATE})
    assert good.status_code == 201 and "refresh" not in good.json()["template"]
    patched = client.patch(
        f"/api/v2/training/schedules/{good.json()['id']}", json={"template": {**TEMPLATE, "refresh": refresh}}
    )
    assert patched.status_code == 422 and field in patched.text
    db.expire_all()
    assert "refresh" not in db.scalar(select(Schedule.template))
