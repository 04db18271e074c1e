"""The dashboard's schedules panel in a real headless Chromium against the real API process: a
schedule created with the form is listed with the API's next fire time, a bad cron shows the
API's 422 next to the form and creates nothing, the Pause and Resume buttons change what the API
says, and a tick fired by the maintenance pass shows its job, linked, with its live status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from app.clock import utcnow
from app.services import candles as candles_service
from app.services import maintenance
from tests.browser import CHROMIUM, PHONE, Browser
from tests.support import TOKEN, wait_until

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
URL = "/api/v2/training/schedules"


def shown(value: str | None) -> str:
    """What the page's when() prints for an API instant."""
    return "–" if value is None else datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def submit(browser: Browser, **fields: str) -> None:
    """Fill the schedule form as a user would and submit it (the browser's own checks included)."""
    browser.evaluate(
        f"(f => {{ for (const [k, v] of Object.entries({json.dumps(fields)})) f.elements[k].value = v;"
        " f.requestSubmit(); })(document.getElementById('schedule-form'))"
    )


def row_js(schedule_id: str) -> str:
    return f"document.querySelector('#schedules tr[data-schedule-id=\"{schedule_id}\"]')"


def row(browser: Browser, schedule_id: str) -> dict | None:
    return browser.evaluate(
        f"(r => r && {{state: r.dataset.state, cells: [...r.cells].map(c => c.textContent),"
        " next: r.querySelector('.next-fire').dataset.time || null,"
        " fires: [...r.querySelectorAll('.fires a')].map(a => ({job: a.dataset.jobId, status: a.dataset.status,"
        f" href: a.getAttribute('href'), text: a.textContent}}))}})({row_js(schedule_id)})"
    )


def click(browser: Browser, schedule_id: str, label: str) -> None:
    assert browser.evaluate(
        f"(b => b.textContent === {label!r} && (b.click(), true))({row_js(schedule_id)}.querySelector('button'))"
    )


def test_schedules_panel_creates_lists_pauses_resumes_and_shows_fired_jobs(
    api_url, http, db, redis, clean, browser, tmp_path
):
    start = utcnow() - timedelta(days=40)
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 24 * 45, seed=1, start_ms=int(start.timestamp() * 1000))
    db.commit()
    browser.open(f"{api_url}/dashboard#token={TOKEN}", ready="document.querySelector('#schedules td') && 1")
    assert browser.evaluate("document.getElementById('schedules').textContent") == "no schedules"

    # A bad cron expression: the API's 422, naming the field, next to the form; nothing created.
    form = {
        "name": "btc hourly",
        "cron": "61 * * * *",
        "timezone": "Europe/London",
        "strategy": "rsi_reversion",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "n_iterations": "7",
        "lookback": "30d",
        "misfire_policy": "skip",
        "overlap_policy": "queue",
    }
    submit(browser, **form)
    error = browser.wait("document.getElementById('schedule-error').textContent", what="the 422 message")
    assert error.startswith("422 cron: ") and "not a valid cron expression: '61 * * * *'" in error
    assert http.get(URL).json()["items"] == []

    # The form creates the schedule through the API; the list shows it with its next fire time.
    submit(browser, **{**form, "cron": "0 * * * *"})
    created = wait_until(lambda: http.get(URL).json()["items"], what="the schedule to be created")
    [schedule] = created
    assert (schedule["name"], schedule["cron"], schedule["timezone"]) == ("btc hourly", "0 * * * *", "Europe/London")
    assert (schedule["misfire_policy"], schedule["overlap_policy"], schedule["paused"]) == ("skip", "queue", False)
    template = schedule["template"]
    assert (template["strategy"], template["timeframe"], template["n_iterations"]) == ("rsi_reversion", "1h", 7)
    assert (template["symbol"], template["lookback"]) == ("BTCUSDT", "30d")
    sid, next_fire = schedule["id"], schedule["next_fire_at"]
    assert next_fire is not None
    listed = browser.wait(f"{row_js(sid)} && 1", what="the new schedule's row") and row(browser, sid)
    assert listed["state"] == "active" and listed["next"] == next_fire
    assert listed["cells"] == [
        "btc hourly",
        "0 * * * *",
        "Europe/London",
        "active",
        shown(next_fire),
        "–",
        "–",
        "Pause",
    ]
    assert browser.evaluate("document.getElementById('schedule-error').textContent") == ""
    assert browser.evaluate("document.getElementById('schedule-form').elements.name.value") == ""

    # The same name again: the API's 409, and still one schedule.
    submit(browser, **{**form, "cron": "0 * * * *"})
    error = browser.wait("document.getElementById('schedule-error').textContent", what="the 409 message")
    assert error == "409 a schedule named 'btc hourly' exists already"
    assert len(http.get(URL).json()["items"]) == 1

    # Pause and Resume: the buttons change what the API says, and the row follows.
    click(browser, sid, "Pause")
    wait_until(lambda: http.get(f"{URL}/{sid}").json()["paused"], what="the API to say paused")
    assert http.get(f"{URL}/{sid}").json()["next_fire_at"] is None
    browser.wait(f"{row_js(sid)}?.dataset.state === 'paused'", what="the row to show paused")
    paused = row(browser, sid)
    assert paused["cells"][3:5] == ["paused", "–"] and paused["cells"][-1] == "Resume"
    click(browser, sid, "Resume")
    resumed = wait_until(
        lambda: (s := http.get(f"{URL}/{sid}").json())["paused"] is False and s, what="the API to say active"
    )
    assert resumed["next_fire_at"] is not None
    browser.wait(f"{row_js(sid)}?.dataset.state === 'active'", what="the row to show active again")
    assert row(browser, sid)["cells"][3:5] == ["active", shown(resumed["next_fire_at"])]

    # The maintenance pass fires the tick: the row shows the job, linked, with its status.
    tick = datetime.fromisoformat(resumed["next_fire_at"])
    [job_id] = maintenance.run_once(clean, redis, now=tick + timedelta(seconds=1)).fired
    job = http.get(f"/api/v2/training/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["params"]["end"] == tick.isoformat().replace("+00:00", "Z")

    def fires(status: str):
        def check():
            r = row(browser, sid)
            return r if r and [f["status"] for f in r["fires"]] == [status] else None

        return wait_until(check, timeout=30, what=f"the fired job shown {status}")

    fired = fires("queued")
    assert fired["fires"] == [
        {"job": job_id, "status": "queued", "href": f"/dashboard/jobs/{job_id}", "text": f"{job_id[:8]} queued"}
    ]
    assert fired["cells"][5] == shown(tick.isoformat())
    browser.screenshot(tmp_path / "schedules-desktop.png")
    assert http.delete(f"/api/v2/training/jobs/{job_id}").json()["status"] == "canceled"
    assert fires("canceled")["fires"][0]["text"] == f"{job_id[:8]} canceled"

    browser.open(f"{api_url}/dashboard#token={TOKEN}", size=PHONE, ready=f"{row_js(sid)} && 1")
    assert browser.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    browser.screenshot(tmp_path / "schedules-phone.png")


def test_schedules_panel_reports_a_wrong_token(api_url, browser):
    browser.open(f"{api_url}/dashboard#token=wrong", ready="document.getElementById('error').textContent")
    assert browser.evaluate("document.getElementById('error').textContent") == "401 missing or invalid bearer token"
    submit(browser, name="x", cron="0 2 * * *")
    error = browser.wait("document.getElementById('schedule-error').textContent", what="the 401 message")
    assert error == "401 missing or invalid bearer token"
