"""Results over HTTP: a trained job's trials and progress history read back from PostgreSQL, the
list's training columns, filters and pages, workers with their current job, and bad input."""

from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.models import Job, ProgressEvent, Trial
from app.services import candles as candles_service
from tests.support import load_demo, start_body, wait_until

TERMINAL = ("succeeded", "failed", "canceled")


def queued_job(client, db, **overrides) -> str:
    """A job accepted (its symbol has enough hourly bars) that no worker runs."""
    body = start_body(timeframe="1h", **overrides)
    candles_service.generate_synthetic(db, body["symbol"], "1h", 300, seed=1)
    db.commit()
    resp = client.post("/api/v2/training/start", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def finish(client, job_id: str, timeout: float = 90) -> dict:
    return wait_until(
        lambda: (b := client.get(f"/api/v2/training/jobs/{job_id}").json())["status"] in TERMINAL and b,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


@pytest.fixture
def trained(client, db, workers) -> dict:
    load_demo(db)
    workers("w1")
    job_id = client.post(
        "/api/v2/training/start", json=start_body(strategy="rsi_reversion", n_iterations=12, min_trades=10)
    ).json()["job_id"]
    final = finish(client, job_id)
    assert final["status"] == "succeeded", final["error"]
    return final


def test_trials_are_the_stored_trials_in_order_and_page(client, db, trained):
    job_id = trained["job_id"]
    rows = db.scalars(select(Trial).where(Trial.job_id == uuid.UUID(job_id)).order_by(Trial.number)).all()
    body = client.get(f"/api/v2/training/jobs/{job_id}/trials").json()
    assert body["total"] == len(rows) == 12 and body["offset"] == 0
    assert [t["number"] for t in body["items"]] == [r.number for r in rows] == list(range(12))
    for item, row in zip(body["items"], rows, strict=True):
        assert item["params"] == row.params and item["score"] == row.score and item["metrics"] == row.metrics
        assert (item["feasible"], item["reason"], item["duration_s"], item["window"]) == (
            row.feasible,
            row.reason,
            row.duration_s,
            row.window,
        )
        assert item["feasible"] is (row.score is not None)
    assert all(t["duration_s"] > 0 for t in body["items"])

    pages = [
        client.get(f"/api/v2/training/jobs/{job_id}/trials", params={"limit": 5, "offset": o}).json()
        for o in (0, 5, 10)
    ]
    assert [len(p["items"]) for p in pages] == [5, 5, 2] and all(p["total"] == 12 for p in pages)
    assert [t["number"] for p in pages for t in p["items"]] == list(range(12))
    assert client.get(f"/api/v2/training/jobs/{job_id}/trials", params={"offset": 50}).json()["items"] == []


def test_progress_history_is_every_persisted_report(client, db, trained):
    job_id = trained["job_id"]
    events = db.scalars(
        select(ProgressEvent).where(ProgressEvent.job_id == uuid.UUID(job_id)).order_by(ProgressEvent.id)
    ).all()
    body = client.get(f"/api/v2/training/jobs/{job_id}/progress/history", params={"limit": 2000}).json()
    assert body["total"] == len(events) == len(body["items"]) > 12
    for item, event in zip(body["items"], events, strict=True):
        assert (item["phase"], item["percent"], item["iteration"], item["message"]) == (
            event.phase,
            event.percent,
            event.iteration,
            event.message,
        )
        assert item["attempt"] == 1
    tail = client.get(
        f"/api/v2/training/jobs/{job_id}/progress/history", params={"limit": 3, "offset": len(events) - 3}
    )
    assert [i["percent"] for i in tail.json()["items"]] == [e.percent for e in events[-3:]]


def test_job_detail_carries_param_importances_of_its_configuration(client, trained):
    detail = client.get(f"/api/v2/training/jobs/{trained['job_id']}").json()
    config = client.get(f"/api/v2/training/configurations/{trained['configuration_id']}").json()
    expected = config.get("param_importances", config["details"].get("param_importances", {}))
    assert detail["param_importances"] == expected
    assert all(math.isfinite(v) for v in detail["param_importances"].values())


def test_a_job_without_a_configuration_has_no_importances_and_no_trials(client, db):
    job_id = queued_job(client, db)
    assert client.get(f"/api/v2/training/jobs/{job_id}").json()["param_importances"] is None
    assert client.get(f"/api/v2/training/jobs/{job_id}/trials").json() == {
        "items": [],
        "total": 0,
        "limit": 500,
        "offset": 0,
    }
    assert client.get(f"/api/v2/training/jobs/{job_id}/progress/history").json()["total"] == 0


def test_non_finite_numbers_are_served_as_null(client, db):
    job_id = queued_job(client, db)
    db.add(Trial(job_id=uuid.UUID(job_id), number=0, params={"fast": 5}, score=float("nan"), feasible=False))
    db.add(Trial(job_id=uuid.UUID(job_id), number=1, params={"fast": 6}, score=float("inf"), duration_s=float("nan")))
    db.add(ProgressEvent(job_id=uuid.UUID(job_id), phase="optimisation", percent=30.0, best_score=float("-inf")))
    db.commit()
    raw = client.get(f"/api/v2/training/jobs/{job_id}/trials")
    assert "NaN" not in raw.text and "Infinity" not in raw.text
    items = json.loads(raw.text)["items"]
    assert [(t["score"], t["feasible"], t["duration_s"]) for t in items] == [(None, False, None), (None, True, None)]
    history = client.get(f"/api/v2/training/jobs/{job_id}/progress/history").json()
    assert history["items"][0]["best_score"] is None and history["items"][0]["attempt"] is None


def test_list_shows_what_is_trained_filters_by_strategy_and_pages(client, db):
    ids = []
    for i, strategy in enumerate(["sma_crossover", "rsi_reversion", "sma_crossover"]):
        ids.append(queued_job(client, db, strategy=strategy, symbol=f"SYM{i}", seed=i))
    page = client.get("/api/v2/training/jobs").json()
    by_id = {item["job_id"]: item for item in page["items"]}
    assert (by_id[ids[1]]["strategy"], by_id[ids[1]]["symbol"], by_id[ids[1]]["timeframe"]) == (
        "rsi_reversion",
        "SYM1",
        "1h",
    )
    assert all(item["duration_s"] is None for item in page["items"])  # none has started

    sma = client.get("/api/v2/training/jobs", params={"strategy": "sma_crossover"}).json()
    assert sma["total"] == 2 and {i["job_id"] for i in sma["items"]} == {ids[0], ids[2]}
    assert client.get("/api/v2/training/jobs", params={"strategy": "liquidity_sweep"}).json()["total"] == 0
    both = client.get("/api/v2/training/jobs", params={"strategy": "sma_crossover", "status": "queued"}).json()
    assert both["total"] == 2

    first = client.get("/api/v2/training/jobs", params={"limit": 2}).json()
    second = client.get("/api/v2/training/jobs", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == 3
    assert [i["job_id"] for i in first["items"] + second["items"]] == ids[::-1]  # newest first

    # A finished job's duration is started → finished.
    started = db.get(Job, uuid.UUID(ids[0])).created_at
    db.execute(
        update(Job)
        .where(Job.id == uuid.UUID(ids[0]))
        .values(status="canceled", started_at=started, finished_at=started + timedelta(seconds=90))
    )
    db.commit()
    item = next(i for i in client.get("/api/v2/training/jobs").json()["items"] if i["job_id"] == ids[0])
    assert item["duration_s"] == 90.0


def test_queue_lists_workers_with_the_job_each_runs(client, db, workers):
    load_demo(db)
    job_id = client.post("/api/v2/training/start", json=start_body(n_iterations=2000)).json()["job_id"]
    workers("w1")
    workers("w2")

    def busy():
        listed = {w["name"]: w for w in client.get("/api/v2/training/queue").json()["worker_list"]}
        return listed if {"w1", "w2"} <= set(listed) and any(w["job_id"] == job_id for w in listed.values()) else None

    listed = wait_until(busy, timeout=60, what="a worker to run the job")
    running = [w for w in listed.values() if w["job_id"] == job_id]
    idle = [w for w in listed.values() if w["job_id"] is None]
    assert len(running) == 1 and running[0]["attempt"] == 1 and len(idle) == 1
    detail = client.get(f"/api/v2/training/jobs/{job_id}").json()
    assert detail["attempt_history"][0]["worker_name"] == running[0]["name"]
    client.delete(f"/api/v2/training/jobs/{job_id}")
    finish(client, job_id, timeout=30)


@pytest.mark.parametrize("route", ["trials", "progress/history"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 2001}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 10**30}, "offset"),
    ],
)
def test_bad_paging_is_422_naming_the_field(client, db, route, query, field):
    job_id = queued_job(client, db)
    resp = client.get(f"/api/v2/training/jobs/{job_id}/{route}", params=query)
    assert resp.status_code == 422, resp.text
    assert [d["loc"] for d in resp.json()["detail"]] == [["query", field]]


@pytest.mark.parametrize("route", ["trials", "progress/history"])
def test_unknown_and_malformed_job_ids(client, db, route):
    missing = uuid.uuid4()
    resp = client.get(f"/api/v2/training/jobs/{missing}/{route}")
    assert resp.status_code == 404 and str(missing) in resp.json()["detail"]
    resp = client.get(f"/api/v2/training/jobs/not-a-uuid/{route}")
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["path", "job_id"]


@pytest.mark.parametrize("route", ["trials", "progress/history"])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc"])
def test_results_need_the_token(anon_client, db, route, header):
    headers = {"Authorization": header} if header else {}
    resp = anon_client.get(f"/api/v2/training/jobs/{uuid.uuid4()}/{route}", headers=headers)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"


def test_bad_strategy_filter_is_422_naming_it(client, db):
    resp = client.get("/api/v2/training/jobs", params={"strategy": "<script>"})
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "strategy"]


def test_dashboard_assets_and_job_page(client, anon_client, db):
    job_id = queued_job(client, db)
    page = anon_client.get(f"/dashboard/jobs/{job_id}")
    policy = page.headers["content-security-policy"]
    assert page.status_code == 200 and "script-src 'self';" in policy  # no inline script runs
    assert '<script src="/dashboard/static/job.js"></script>' in page.text and "<script>" not in page.text
    assert 'src="/dashboard/static/vendor/uplot-1.6.32/uPlot.iife.min.js"' in page.text
    script = anon_client.get("/dashboard/static/vendor/uplot-1.6.32/uPlot.iife.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    for path in ["common.js", "job.js", "dashboard.js", "schedules.js", "vendor/uplot-1.6.32/uPlot.min.css"]:
        assert anon_client.get(f"/dashboard/static/{path}").status_code == 200, path
    for path in [
        "job.html",
        "vendor/uplot-1.6.32/LICENSE",
        "../routes/dashboard.py",
        "..%2F..%2Fsettings.py",
        "nope.js",
    ]:
        assert anon_client.get(f"/dashboard/static/{path}").status_code == 404, path
    assert anon_client.get("/dashboard/jobs/not-a-uuid").status_code == 422
