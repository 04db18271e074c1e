"""End to end: start a job over HTTP → a forking worker runs it → progress goes through the
four phases in order up to 100 → succeeded → exactly one configuration, reproducible."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from app.engine.backtest import Costs, backtest
from app.engine.ranges import for_strategy
from app.engine.strategies import get_strategy
from app.engine.validate import split_at
from app.models import ProgressEvent, TrainedConfiguration
from app.services import candles as candles_service
from app.status import JobStatus
from tests.support import load_demo, start_body, wait_until

PHASE_ORDER = ["data_preparation", "optimisation", "validation", "saving"]


def test_job_runs_through_four_phases_and_saves_one_configuration(client, db, workers):
    load_demo(db)
    workers("w1")
    resp = client.post("/api/v2/training/start", json=start_body())
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert resp.json()["progress_url"].endswith(f"/api/v2/training/jobs/{job_id}/progress")

    seen = []

    def finished():
        body = client.get(f"/api/v2/training/jobs/{job_id}/progress").json()
        seen.append(body["percent"])
        return body if body["status"] in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED) else None

    final = wait_until(finished, timeout=90, interval=0.1, what="training job to finish")
    assert final["status"] == JobStatus.SUCCEEDED, final
    assert final["percent"] == 100.0 and final["iteration"] == 12 and final["attempts"] == 1
    assert final["configuration_id"] is not None and final["error"] is None
    assert seen == sorted(seen), "percent went backwards"

    events = db.scalars(select(ProgressEvent).where(ProgressEvent.job_id == job_id).order_by(ProgressEvent.id)).all()
    phases = [e.phase for e in events]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == PHASE_ORDER
    percents = [e.percent for e in events]
    assert percents == sorted(percents) and percents[-1] >= 95.0
    for e in events:
        lo, hi = {"data_preparation": (0, 25), "optimisation": (25, 75), "validation": (75, 95), "saving": (95, 100)}[
            e.phase
        ]
        assert lo <= e.percent <= hi, (e.phase, e.percent)
    assert [e.iteration for e in events if e.phase == "optimisation"] == list(range(1, 13))

    configs = db.scalars(select(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)).all()
    assert len(configs) == 1
    config = configs[0]
    assert config.strategy == "sma_crossover" and config.symbol == "BTCUSDT" and config.timeframe == "5m"
    assert config.seed == 7 and config.code_version

    # Re-running the backtest with the saved parameters reproduces the saved validation metrics.
    candles = candles_service.load(db, "BTCUSDT", "5m", None, None)
    strategy = get_strategy("sma_crossover")
    holdout = for_strategy(candles, split_at(len(candles), 0.2), len(candles), strategy)  # warmed on training bars
    again = backtest(holdout.bars, holdout.positions(strategy, config.params), Costs())
    assert again.metrics == config.validation_metrics


def test_same_idempotency_key_and_body_returns_the_same_job(client, db):
    load_demo(db, 2_000)
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/api/v2/training/start", json=start_body(), headers=headers)
    again = client.post("/api/v2/training/start", json=start_body(), headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"]
    other = client.post("/api/v2/training/start", json=start_body(seed=8), headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    assert client.get("/api/v2/training/jobs").json()["total"] == 1


def test_no_candles_fails_without_retry(client, db, workers):
    """Submit refuses a symbol without candles; the job process checks again, for candles
    deleted after the job was accepted."""
    refused = client.post("/api/v2/training/start", json=start_body(symbol="NODATA"))
    assert refused.status_code == 422 and "no candles stored for NODATA" in refused.text
    load_demo(db)
    resp = client.post("/api/v2/training/start", json=start_body())
    job_id = resp.json()["job_id"]
    db.execute(text("DELETE FROM candles"))
    db.commit()
    workers("w1")
    final = wait_until(
        lambda: (b := client.get(f"/api/v2/training/jobs/{job_id}").json())["status"] == JobStatus.FAILED and b,
        timeout=30,
        what="job to fail",
    )
    assert final["error"]["type"] == "JobInputError" and "no candles" in final["error"]["message"]
    assert final["attempts"] == 1 and len(final["attempt_history"]) == 1
    assert db.scalar(select(func.count()).select_from(TrainedConfiguration)) == 0


def test_configuration_routes(client, db, workers):
    load_demo(db)
    workers("w1")
    job_id = client.post("/api/v2/training/start", json=start_body(n_iterations=5)).json()["job_id"]
    final = wait_until(
        lambda: (
            (b := client.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"] == JobStatus.SUCCEEDED and b
        ),
        timeout=60,
        what="job to succeed",
    )
    config_id = final["configuration_id"]
    detail = client.get(f"/api/v2/training/configurations/{config_id}").json()
    assert detail["job_id"] == job_id and detail["seed"] == 7 and "equity_curve" in detail["details"]
    page = client.get("/api/v2/training/configurations", params={"symbol": "BTCUSDT"}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == config_id
    best = client.get("/api/v2/training/configurations/best", params={"symbol": "BTCUSDT"}).json()
    assert best["id"] == config_id
    assert client.get("/api/v2/training/configurations/best", params={"symbol": "ETHUSDT"}).status_code == 404
    assert client.get("/api/v2/training/configurations/best", params={"symbol": "eth"}).status_code == 422
    assert client.get(f"/api/v2/training/configurations/{job_id}").status_code == 404


def test_progress_can_be_followed_as_a_stream(client, db, workers):
    load_demo(db)
    job_id = client.post("/api/v2/training/start", json=start_body(n_iterations=30)).json()["job_id"]
    workers("w1")
    lines = []
    with client.stream("GET", f"/api/v2/training/jobs/{job_id}/progress", params={"follow": "true"}) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        for line in resp.iter_lines():
            if line:
                lines.append(json.loads(line))
    assert lines[0]["job_id"] == job_id and lines[-1]["status"] == JobStatus.SUCCEEDED
    assert len(lines) >= 2
    percents = [body["percent"] for body in lines]
    assert percents == sorted(percents) and percents[-1] == 100.0


def test_a_jobs_costs_are_trained_with_saved_and_shown(client, db, workers):
    """Costs named on the start reach the engine and come back with the configuration: its
    holdout is priced at them, as the per-bar reference loop prices it."""
    from tests.engine.reference import reference_backtest

    load_demo(db)
    workers("w1")
    resp = client.post("/api/v2/training/start", json=start_body(fee_bps=0, slippage_bps=0))
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    final = wait_until(
        lambda: (
            (b := client.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"]
            in (JobStatus.SUCCEEDED, JobStatus.FAILED)
            and b
        ),
        timeout=90,
        interval=0.2,
        what="training job to finish",
    )
    assert final["status"] == JobStatus.SUCCEEDED, final
    config = client.get(f"/api/v2/training/configurations/{final['configuration_id']}").json()
    assert (config["fee_bps"], config["slippage_bps"]) == (0, 0)
    assert client.get(f"/api/v2/training/jobs/{job_id}").json()["params"]["fee_bps"] == 0

    candles = candles_service.load(db, "BTCUSDT", "5m", None, None)
    strategy = get_strategy("sma_crossover")
    holdout = for_strategy(candles, split_at(len(candles), 0.2), len(candles), strategy)
    positions, exits = holdout.orders(strategy, config["params"])
    free, _ = reference_backtest(holdout.bars, positions, Costs(0, 0), exits)
    assert config["validation_metrics"]["total_return"] == pytest.approx(free[-1] - 1.0, rel=1e-9, abs=1e-12)
    charged, _ = reference_backtest(holdout.bars, positions, Costs(), exits)
    if config["validation_metrics"]["n_trades"]:
        assert charged[-1] < free[-1]
