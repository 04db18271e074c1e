"""Training results through the real stack (HTTP → worker → PostgreSQL → HTTP): no degenerate
winner, no sentinel or non-finite number in any body, benchmark and search statistics returned,
a clear failure when nothing is viable, and walk-forward as a validation mode."""

from __future__ import annotations

import json
import math

import numpy as np
from sqlalchemy import func, select

from app.api.schemas import ConfigurationDetail, Progress
from app.engine.backtest import Costs, backtest
from app.engine.ranges import for_strategy
from app.engine.strategies import get_strategy
from app.engine.walkforward import windows
from app.models import TrainedConfiguration, Trial
from app.services import candles as candles_service
from tests.support import wait_until

DEMO_BARS, DEMO_SEED = 60_000, 1  # what `make dev` loads


def load_demo(db, bars=DEMO_BARS, seed=DEMO_SEED):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", bars, seed=seed)
    db.commit()


def finished(client, job_id, timeout=240):
    return wait_until(
        lambda: (
            (b := client.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"]
            in ("succeeded", "failed", "canceled")
            and b
        ),
        timeout=timeout,
        interval=0.2,
        what="training job to finish",
    )


def strict_json(text: str):
    """Parse a body refusing NaN/Infinity, and fail on any sentinel-sized number."""

    def refuse(name):
        raise AssertionError(f"non-finite number {name} in an API body")

    body = json.loads(text, parse_constant=refuse)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, float):
            assert math.isfinite(value) and abs(value) < 1e8, value

    walk(body)
    return body


def test_demo_rsi_reversion_saves_no_degenerate_winner(client, db, workers):
    """The reported case: rsi_reversion 5m, 300 iterations on the demo data saved a 1-trade
    configuration with score -1e9. Now every saved result meets its min_trades."""
    load_demo(db)
    workers("w1")
    body = {"strategy": "rsi_reversion", "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 300}
    job_id = client.post("/api/v2/training/start", json=body).json()["job_id"]
    final = finished(client, job_id)
    assert final["status"] == "succeeded", final
    resp = client.get(f"/api/v2/training/configurations/{final['configuration_id']}")
    detail = strict_json(resp.text)
    assert detail["min_trades"] == 30
    assert detail["train_metrics"]["n_trades"] >= detail["min_trades"]
    assert detail["validation_metrics"]["n_trades"] >= 1 and detail["trades"]
    assert detail["score"] is None or detail["score"] > -1e8
    assert detail["validation_mode"] == "holdout" and detail["windows"] == []
    stats = detail["statistics"]
    assert stats["n_trials"] == 300 and 0.0 <= stats["deflated_sharpe"] <= 1.0 and 0.0 <= stats["pbo"] <= 1.0
    assert stats["verdict"] and stats["overfit"] == (stats["kind"] == "does_not_survive") == detail["overfit"]
    assert (stats["reason"] is None) == (stats["kind"] == "worth_a_closer_look")
    assert set(detail["benchmark_metrics"]) == {"train", "validation"}
    assert set(detail["excess"]["validation"]) == {"total_return", "sharpe"}
    curve = detail["equity_curve"]
    assert len(curve["time"]) == len(curve["strategy"]) == len(curve["benchmark"]) <= 2000
    assert curve["strategy"][0] == curve["benchmark"][0] == 1.0
    assert curve["time"][0] < detail["validation_start"] <= curve["time"][-1]
    assert "+" in detail["code_version"]

    trials = db.scalars(select(Trial).where(Trial.job_id == job_id)).all()
    assert len(trials) == 300
    for t in trials:
        assert (t.score is None) == (not t.feasible) == (t.reason is not None), (t.score, t.feasible, t.reason)
        assert t.duration_s is not None and t.duration_s >= 0
        if t.feasible:
            assert t.metrics["n_trades"] >= 30
    assert any(not t.feasible for t in trials)
    for page in (client.get("/api/v2/training/jobs"), client.get(f"/api/v2/training/jobs/{job_id}")):
        strict_json(page.text)


def test_no_viable_configuration_fails_clearly_without_retry(client, db, workers):
    load_demo(db, bars=5_000)
    workers("w1")
    body = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 15, "min_trades": 5000}
    job_id = client.post("/api/v2/training/start", json=body).json()["job_id"]
    final = finished(client, job_id, timeout=90)
    assert final["status"] == "failed" and final["attempts"] == 1, final
    assert final["error"]["type"] == "NoViableConfiguration"
    message = final["error"]["message"]
    assert "15 trials tried" in message and "the minimum is 5000" in message and "most trades" in message
    assert db.scalar(select(func.count()).select_from(TrainedConfiguration)) == 0


def test_walk_forward_job_stitches_out_of_sample_windows(client, db, workers):
    load_demo(db, bars=30_000)
    workers("w1")
    body = {
        "strategy": "sma_crossover",
        "symbol": "BTCUSDT",
        "timeframe": "5m",
        "n_iterations": 12,
        "seed": 3,
        "min_trades": 10,
        "validation": {"mode": "walk_forward", "windows": 3},
    }
    job_id = client.post("/api/v2/training/start", json=body).json()["job_id"]
    final = finished(client, job_id, timeout=120)
    assert final["status"] == "succeeded", final
    assert final["iteration"] == final["n_iterations"] == 36
    detail = strict_json(client.get(f"/api/v2/training/configurations/{final['configuration_id']}").text)
    assert detail["validation_mode"] == "walk_forward" and len(detail["windows"]) == 3
    assert [w["index"] for w in detail["windows"]] == [0, 1, 2]
    assert detail["params"] == detail["windows"][-1]["params"]
    trials = db.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all()
    assert [t.window for t in trials] == [0] * 12 + [1] * 12 + [2] * 12

    # Re-run each out-of-sample window with its chosen parameters: the stitched result is exact.
    data = candles_service.load(db, "BTCUSDT", "5m", None, None)
    strategy = get_strategy("sma_crossover")
    plan = windows(len(data), 3, anchored=False)
    chosen = [row["params"] for row in detail["windows"]]
    positions = [
        for_strategy(data, *w.out_of_sample, strategy).positions(strategy, p) for p, w in zip(chosen, plan, strict=True)
    ]

    oos = data[plan[0].out_of_sample[0] :]
    again = backtest(oos, np.concatenate(positions), Costs())
    assert again.metrics == detail["validation_metrics"]
    row = db.get(TrainedConfiguration, detail["id"])
    assert row.details["validation_start"] == int(oos.open_time[0])


def test_response_schemas_turn_non_finite_numbers_into_null():
    progress = Progress.model_construct()  # noqa: F841 - the type is what is checked below
    detail = ConfigurationDetail.model_validate(
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "job_id": "00000000-0000-0000-0000-000000000002",
            "strategy": "s",
            "symbol": "X",
            "timeframe": "5m",
            "params": {"a": float("nan")},
            "objective": "sharpe",
            "score": float("inf"),
            "train_metrics": {"sharpe": float("-inf"), "nested": [1.0, float("nan")]},
            "validation_metrics": {},
            "overfit": False,
            "overfit_reason": None,
            "data_start": None,
            "data_end": None,
            "seed": 1,
            "code_version": "v",
            "created_at": "2026-01-01T00:00:00Z",
            "details": {"x": float("nan")},
            "statistics": {"deflated_sharpe": float("nan"), "verdict": "v"},
        }
    )
    text = detail.model_dump_json()
    body = strict_json(text)
    assert body["score"] is None and body["params"] == {"a": None}
    assert body["train_metrics"] == {"sharpe": None, "nested": [1.0, None]}
    assert body["details"] == {"x": None} and body["statistics"]["deflated_sharpe"] is None


def test_bad_result_options_are_refused_naming_the_field(client, db):
    base = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "5m"}
    cases = [
        ({"min_trades": 0}, "min_trades"),
        ({"min_trades": "30"}, "min_trades"),
        ({"validation": {"mode": "kfold"}}, "mode"),
        ({"validation": {"mode": "walk_forward", "windows": 1}}, "windows"),
        ({"validation": {"mode": "walk_forward", "extra": 1}}, "extra"),
    ]
    for extra, field in cases:
        resp = client.post("/api/v2/training/start", json={**base, **extra})
        assert resp.status_code == 422, (extra, resp.text)
        assert any(field in map(str, e["loc"]) for e in resp.json()["detail"]), (extra, resp.json())
    assert client.get("/api/v2/training/jobs").json()["total"] == 0
