"""/api/v2/training/schedules over HTTP: create, list, detail, pause, resume, update, delete;
bad input is a 422 naming the field and writes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy import update as sa_update

from app.clock import utcnow
from app.models import Schedule
from app.services import candles as candles_service
from app.services import maintenance

URL = "/api/v2/training/schedules"
TEMPLATE = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
GOOD = {"name": "btc nightly", "cron": "0 2 * * *", "timezone": "Europe/London", "template": TEMPLATE}


def schedule_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Schedule))


def test_create_list_detail_pause_resume_update_delete(client, db):
    resp = client.post(URL, json={**GOOD, "template": {**TEMPLATE, "lookback": "90d"}})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["template"]["lookback"] == "90d" and created["template"]["strategy"] == "sma_crossover"
    assert created["misfire_policy"] == "run_once" and created["overlap_policy"] == "skip"
    assert created["paused"] is False and created["recent_fires"] == []
    next_fire = datetime.fromisoformat(created["next_fire_at"])
    assert next_fire > utcnow() and next_fire - utcnow() <= timedelta(days=1)
    assert next_fire.astimezone(ZoneInfo("Europe/London")).hour == 2

    listed = client.get(URL).json()["items"]
    assert [s["id"] for s in listed] == [created["id"]]

    paused = client.post(f"{URL}/{created['id']}/pause").json()
    assert paused["paused"] is True and paused["next_fire_at"] is None
    resumed = client.post(f"{URL}/{created['id']}/resume").json()
    assert resumed["paused"] is False and resumed["next_fire_at"] == created["next_fire_at"]

    patched = client.patch(f"{URL}/{created['id']}", json={"cron": "30 3 * * 1", "overlap_policy": "queue"})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["cron"] == "30 3 * * 1" and body["overlap_policy"] == "queue"
    assert body["template"]["lookback"] == "90d", "a PATCH without template keeps it"
    fire = datetime.fromisoformat(body["next_fire_at"]).astimezone(ZoneInfo("Europe/London"))
    assert (fire.weekday(), fire.hour, fire.minute) == (0, 3, 30)

    assert client.delete(f"{URL}/{created['id']}").status_code == 204
    assert client.get(f"{URL}/{created['id']}").status_code == 404
    assert schedule_count(db) == 0


def test_detail_shows_the_jobs_fired_and_their_outcome(client, db, redis, clean):
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 300, seed=1)
    db.commit()
    created = client.post(URL, json={**GOOD, "cron": "* * * * *", "timezone": "UTC"}).json()
    report = maintenance.run_once(clean, redis, now=datetime.fromisoformat(created["next_fire_at"]))
    assert len(report.fired) == 1
    detail = client.get(f"{URL}/{created['id']}").json()
    [fire] = detail["recent_fires"]
    assert fire["fire_time"] == created["next_fire_at"] and fire["outcome"] == "started"
    assert fire["job_id"] == report.fired[0] and fire["job_status"] == "queued"
    job = client.get(f"/api/v2/training/jobs/{fire['job_id']}").json()
    assert job["params"]["strategy"] == "sma_crossover" and job["params"]["n_iterations"] == 10


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"template": {**TEMPLATE, "strategy": "nope"}}, "strategy"),
        ({"template": {**TEMPLATE, "n_iterations": 0}}, "n_iterations"),
        ({"template": {**TEMPLATE, "fee_bps": "10"}}, "fee_bps"),
        ({"template": {**TEMPLATE, "slippage_bps": -1}}, "slippage_bps"),
        ({"template": {**TEMPLATE, "fee_bps": 1001}}, "fee_bps"),
        ({"template": {**TEMPLATE, "lookback": "ninety days"}}, "lookback"),
        ({"template": {**TEMPLATE, "lookback": "90d", "start": "2024-01-01T00:00:00Z"}}, "lookback"),
        ({"misfire_policy": "burst"}, "misfire_policy"),
        ({"overlap_policy": "maybe"}, "overlap_policy"),
        ({"name": ""}, "name"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_create_is_422_naming_the_field(client, db, change, field):
    resp = client.post(URL, json={**GOOD, **change})
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    assert schedule_count(db) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"cron": "* *"}, "cron"), ({"timezone": "Nowhere/City"}, "timezone"), ({"paused": None}, "paused")],
)
def test_invalid_update_is_422_and_changes_nothing(client, db, change, field):
    created = client.post(URL, json=GOOD).json()
    resp = client.patch(f"{URL}/{created['id']}", json=change)
    assert resp.status_code == 422 and field in resp.text
    assert client.get(f"{URL}/{created['id']}").json()["cron"] == GOOD["cron"]


def test_duplicate_name_is_409(client, db):
    assert client.post(URL, json=GOOD).status_code == 201
    resp = client.post(URL, json=GOOD)
    assert resp.status_code == 409 and "name" in resp.text
    assert schedule_count(db) == 1


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("patch", ""), ("delete", ""), ("post", "/pause"), ("post", "/resume")],
)
def test_unknown_id_is_404(client, method, suffix):
    kwargs = {"json": {"paused": True}} if method == "patch" else {}
    resp = getattr(client, method)(f"{URL}/{uuid.uuid4()}{suffix}", **kwargs)
    assert resp.status_code == 404 and "no schedule" in resp.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_no_or_wrong_token_is_401(anon_client, db, headers):
    assert anon_client.get(URL, headers=headers).status_code == 401
    assert anon_client.post(URL, json=GOOD, headers=headers).status_code == 401
    assert schedule_count(db) == 0


def test_metrics_count_schedules_and_show_the_fire_lag(client, anon_client, db):
    active = client.post(URL, json={**GOOD, "name": "a"}).json()
    paused = client.post(URL, json={**GOOD, "name": "b", "paused": True}).json()
    assert paused["next_fire_at"] is None
    text = anon_client.get("/metrics").text
    assert 'trad_schedules{state="active"} 1.0' in text and 'trad_schedules{state="paused"} 1.0' in text
    assert "trad_schedule_fire_lag_seconds 0.0" in text
    # Its tick came ten minutes ago and no pass has fired it.
    row = db.get(Schedule, uuid.UUID(active["id"]))
    row.next_fire_at = utcnow() - timedelta(minutes=10)
    db.commit()
    lag = next(line for line in anon_client.get("/metrics").text.splitlines() if line.startswith("trad_schedule_fire"))
    assert 600 <= float(lag.split()[1]) < 3600


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 30 2 * 15"])
def test_a_cron_that_never_fires_is_422_and_writes_nothing(client, db, expression):
    """Fields each in range, but no date ever matches (30 February, 31 April): refused on create,
    paused or not, and on update, naming `cron`; nothing stored or changed."""
    for paused in (True, False):
        resp = client.post(URL, json={**GOOD, "cron": expression, "paused": paused})
        assert resp.status_code == 422, resp.text
        [error] = resp.json()["detail"]
        assert error["loc"][-1] == "cron" and "never" in error["msg"]
        assert schedule_count(db) == 0
    created = client.post(URL, json=GOOD).json()
    resp = client.patch(f"{URL}/{created['id']}", json={"cron": expression})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][-1] == "cron"
    assert client.get(f"{URL}/{created['id']}").json()["cron"] == GOOD["cron"]
    assert client.post(f"{URL}/{created['id']}/pause").status_code == 200
    assert client.post(f"{URL}/{created['id']}/resume").status_code == 200


def test_resuming_a_stored_schedule_that_never_fires_is_409_and_changes_nothing(client, db):
    """A paused schedule with such a cron, stored before it was refused, is not resumed."""
    created = client.post(URL, json={**GOOD, "paused": True}).json()
    db.execute(sa_update(Schedule).where(Schedule.id == uuid.UUID(created["id"])).values(cron="0 0 30 2 *"))
    db.commit()
    for resp in (
        client.post(f"{URL}/{created['id']}/resume"),
        client.patch(f"{URL}/{created['id']}", json={"paused": False}),
    ):
        assert resp.status_code == 409, resp.text
        assert "never fires" in resp.json()["detail"]
    after = client.get(f"{URL}/{created['id']}").json()
    assert after["paused"] is True and after["next_fire_at"] is None
    resp = client.patch(f"{URL}/{created['id']}", json={"cron": "0 2 * * *", "paused": False})
    assert resp.status_code == 200 and resp.json()["next_fire_at"] is not None
