"""The dashboard's Data panel in a real headless Chromium against the real API process: each
stored symbol and timeframe with its range, bar count, sources and last refresh, as
`GET /api/v2/candles` gives them; and the schedule form's refresh, with the fire's refresh job
shown in the schedule's row."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.clock import utcnow
from app.models import Job
from app.repositories import candles as candles_repo
from app.services import candles as candles_service
from app.services import maintenance
from app.status import JobStatus
from tests.browser import CHROMIUM, PHONE, Browser
from tests.support import TOKEN, wait_until

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
HOUR = 3_600_000


def shown(value: str) -> str:
    """What the page's when() prints for an API instant."""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def rows(browser: Browser) -> list[list[str]]:
    return browser.evaluate(
        "[...document.querySelectorAll('#candles tr')].map(r => [...r.cells].map(c => c.textContent))"
    )


def test_data_panel_lists_each_series_as_the_api_gives_it(api_url, http, db, clean, browser: Browser, tmp_path):
    browser.open(f"{api_url}/dashboard#token={TOKEN}", ready="document.querySelector('#candles td') && 1")
    assert rows(browser) == [["no candles stored"]]

    start_ms = int((utcnow() - timedelta(days=3)).timestamp() * 1000) // HOUR * HOUR
    bars = [(start_ms + i * HOUR, 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(50)]
    candles_repo.insert(db, "BTCUSDT", "1h", bars, source="binance")
    candles_service.generate_synthetic(db, "ETHUSDT", "1m", 1234, seed=2)
    refreshed_at = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    db.add(
        Job(
            id=uuid.uuid4(),
            kind="candles_refresh",
            status=JobStatus.SUCCEEDED,
            priority="normal",
            params={"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "as": "BTCUSDT"},
            finished_at=refreshed_at,
        )
    )
    db.commit()

    api = http.get("/api/v2/candles").json()["items"]
    assert [(s["symbol"], s["timeframe"], s["bars"]) for s in api] == [("BTCUSDT", "1h", 50), ("ETHUSDT", "1m", 1234)]
    expected = [
        [
            s["symbol"],
            s["timeframe"],
            shown(s["first"]),
            shown(s["last"]),
            f"{s['bars']:,}",
            ", ".join(s["sources"]),
            shown(s["last_refresh_at"]) if s["last_refresh_at"] else "never",
        ]
        for s in api
    ]
    assert expected[0][5:] == ["binance", shown(refreshed_at.isoformat())] and expected[1][5:] == ["synthetic", "never"]
    assert expected[0][2] == shown(datetime.fromtimestamp(start_ms / 1000, UTC).isoformat())
    wait_until(lambda: rows(browser) == expected, timeout=30, what="the Data panel to show the stored candles")
    browser.screenshot(tmp_path / "data-desktop.png")
    browser.open(
        f"{api_url}/dashboard#token={TOKEN}",
        size=PHONE,
        ready="document.querySelector('#candles tr[data-symbol]') && 1",
    )
    assert rows(browser) == expected
    browser.screenshot(tmp_path / "data-phone.png")


def test_the_schedule_form_asks_for_a_refresh_and_the_row_shows_the_refresh_job(
    api_url, http, db, redis, clean, browser: Browser
):
    start_ms = int((utcnow() - timedelta(days=40)).timestamp() * 1000) // HOUR * HOUR
    candles_repo.insert(
        db, "BTCUSDT", "1h", [(start_ms + i * HOUR, 1.0, 2.0, 0.5, 1.5, 1.0) for i in range(900)], "binance"
    )
    db.commit()
    browser.open(f"{api_url}/dashboard#token={TOKEN}", ready="document.querySelector('#schedules td') && 1")
    form = {
        "name": "btc refreshed",
        "cron": "0 * * * *",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "n_iterations": "5",
        "lookback": "30d",
        "refresh_exchange": "binanse",
        "refresh_symbol": "BTC/USDT",
    }
    fill = "(f => { for (const [k, v] of Object.entries(%s)) f.elements[k].value = v; f.requestSubmit(); })"
    browser.evaluate(fill % json.dumps(form) + "(document.getElementById('schedule-form'))")
    error = browser.wait("document.getElementById('schedule-error').textContent", what="the 422 message")
    assert error.startswith("422 template.refresh.exchange: ") and "'binanse'" in error, error
    assert http.get("/api/v2/training/schedules").json()["items"] == []

    browser.evaluate(
        fill % json.dumps({**form, "refresh_exchange": "binance"}) + "(document.getElementById('schedule-form'))"
    )
    [schedule] = wait_until(lambda: http.get("/api/v2/training/schedules").json()["items"], what="the schedule")
    assert schedule["template"]["refresh"] == {"exchange": "binance", "symbol": "BTC/USDT"}

    tick = datetime.fromisoformat(schedule["next_fire_at"])
    [refresh_id] = maintenance.run_once(clean, redis, now=tick + timedelta(seconds=1)).fired
    assert http.get(f"/api/v2/training/jobs/{refresh_id}").json()["status"] == "queued"
    link = f'#schedules tr[data-schedule-id="{schedule["id"]}"] .fires a'
    shown_fire = browser.wait(
        f"(a => a && {{text: a.textContent, href: a.getAttribute('href'), outcome: a.dataset.outcome}})"
        f"(document.querySelector({json.dumps(link)}))",
        what="the fire's refresh job in the row",
    )
    assert shown_fire == {
        "text": f"refreshing {refresh_id[:8]}",
        "href": f"/dashboard/jobs/{refresh_id}",
        "outcome": "refreshing",
    }
