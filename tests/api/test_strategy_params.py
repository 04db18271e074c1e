"""`params` of POST /start and of schedule templates: fixed values or narrowed ranges per
parameter, checked against the strategy's space (the engine's own `Strategy.narrowed`); bad
ones are a 422 naming the parameter and write nothing. A job records the strategy's package and
version it was accepted with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.engine.registry import get_strategy
from app.models import Job, Schedule, TrainedConfiguration

GOOD = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
pytestmark = pytest.mark.usefixtures("candles_1h")


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"nope": 3}, "unknown parameter 'nope'"),
        ({"fast": 1}, "parameter 'fast' must be between 2 and 200"),
        ({"fast": 201}, "parameter 'fast' must be between 2 and 200"),
        ({"fast": 2.5}, "parameter 'fast' must be an integer"),
        ({"fast": "ten"}, "parameter 'fast' must be an integer"),
        ({"fast": True}, "parameter 'fast' must be an integer"),
        ({"slow": {"low": 10, "high": 2000}}, "parameter 'slow' must be between 5 and 1000"),
        ({"slow": {"low": 300, "high": 100}}, "parameter 'slow': low 300 is above high 100"),
        ({"slow": {"choices": [10, 20]}}, "parameter 'slow': a range is"),
        ({"fast": 50, "slow": 20}, "fast must be less than slow"),
        ({"fast": {"low": 100, "high": 200}, "slow": {"low": 5, "high": 50}}, "fast must be less than slow"),
    ],
)
def test_params_outside_the_space_are_422_naming_the_parameter(client, db, params, words):
    resp = client.post("/api/v2/training/start", json={**GOOD, "params": params})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail[0]["loc"][:2] == ["body", "params"], detail
    assert words in detail[0]["msg"], detail
    assert count(db, Job) == 0


@pytest.mark.parametrize(
    "params",
    [
        {"fast": {"low": 2, "high": 5, "step": 1}},  # a range has low and high only
        {"fast": None},
        {"fast": [2, 3]},
        "fast=2",
        {"x" * 65: 1},
    ],
)
def test_malformed_params_are_422(client, db, params):
    resp = client.post("/api/v2/training/start", json={**GOOD, "params": params})
    assert resp.status_code == 422, resp.text
    assert "params" in resp.text
    assert count(db, Job) == 0


def test_params_of_another_strategy_are_refused_for_this_one(client, db):
    resp = client.post("/api/v2/training/start", json={**GOOD, "params": {"window": 20}})
    assert resp.status_code == 422 and "unknown parameter 'window' for sma_crossover" in resp.text
    assert count(db, Job) == 0


def test_narrowed_params_are_stored_with_the_strategy_version(client, db):
    params = {"fast": 12, "slow": {"low": 40, "high": 90}}
    resp = client.post("/api/v2/training/start", json={**GOOD, "params": params})
    assert resp.status_code == 202, resp.text
    db.expire_all()
    job = db.scalars(select(Job)).one()
    strategy = get_strategy("sma_crossover")
    assert job.params["params"] == params
    assert (job.params["strategy_package"], job.params["strategy_version"]) == (strategy.package, strategy.version)
    # The same body again with the same key replays; the version is stored, not hashed.
    again = client.post("/api/v2/training/start", json={**GOOD, "params": params}, headers={"Idempotency-Key": "k1"})
    replay = client.post("/api/v2/training/start", json={**GOOD, "params": params}, headers={"Idempotency-Key": "k1"})
    assert (again.status_code, replay.status_code) == (202, 200)
    assert replay.json()["job_id"] == again.json()["job_id"]


def test_a_range_may_leave_one_bound_out(client, db):
    resp = client.post("/api/v2/training/start", json={**GOOD, "params": {"slow": {"high": 100}}})
    assert resp.status_code == 202, resp.text
    narrowed = get_strategy("sma_crossover").narrowed({"slow": {"high": 100}})
    assert [(p.low, p.high) for p in narrowed.space] == [(2, 200), (5, 100)]


def test_a_schedule_template_with_bad_params_is_422_and_stores_nothing(client, db):
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "template": {**GOOD, "params": {"fast": 500}},
    }
    resp = client.post("/api/v2/training/schedules", json=body)
    assert resp.status_code == 422, resp.text
    assert "parameter 'fast' must be between 2 and 200" in resp.text
    assert count(db, Schedule) == 0
    body["template"]["params"] = {"fast": {"low": 5, "high": 20}}
    resp = client.post("/api/v2/training/schedules", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["template"]["params"] == {"fast": {"low": 5, "high": 20}}


def _saved(db, version: str | None, score: float, created_at: datetime, strategy: str = "sma_crossover") -> str:
    job = Job(kind="training", params={"strategy": strategy}, attempts=1)
    db.add(job)
    db.flush()
    config = TrainedConfiguration(
        job_id=job.id,
        strategy=strategy,
        strategy_package=None if version is None else "trad",
        strategy_version=version,
        symbol="BTCUSDT",
        timeframe="1h",
        params={},
        objective="sharpe",
        score=score,
        train_metrics={},
        validation_metrics={},
        seed=1,
        code_version="test",
        created_at=created_at,
    )
    db.add(config)
    db.commit()
    return str(config.id)


def test_the_best_configuration_never_mixes_versions(client, db):
    day = datetime(2026, 1, 1, tzinfo=UTC)
    legacy = _saved(db, None, 9.0, day)  # saved before versions were kept: a version of its own
    old = _saved(db, "1.0", 5.0, day + timedelta(days=1))
    new_low = _saved(db, "1.1", 1.0, day + timedelta(days=2))
    new_high = _saved(db, "1.1", 2.0, day + timedelta(days=3))
    other = _saved(db, "1.0", 3.0, day + timedelta(days=4), strategy="rsi_reversion")

    def best(**query) -> str:
        resp = client.get("/api/v2/training/configurations/best", params={"symbol": "BTCUSDT", **query})
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    # Newest version of sma_crossover is 1.1: its best, though 1.0 and the legacy one scored higher.
    assert best(strategy="sma_crossover") == new_high != new_low
    assert best(strategy="sma_crossover", version="1.0") == old
    assert best() == other  # each strategy's newest version, then the best of those
    assert legacy not in (best(), best(strategy="sma_crossover"))
    missing = client.get("/api/v2/training/configurations/best", params={"symbol": "BTCUSDT", "version": "7.0"})
    assert missing.status_code == 404 and "7.0" in missing.text
    bad = client.get("/api/v2/training/configurations/best", params={"symbol": "BTCUSDT", "version": "1 0"})
    assert bad.status_code == 422 and "version" in bad.text
