"""The dashboard in a real headless Chromium against a real API process: it renders the jobs
PostgreSQL holds, and says so when the token is wrong."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from app.status import JobStatus
from tests.browser import CHROMIUM, Browser, chromium_command
from tests.support import TOKEN

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def render(url: str, tmp_path: Path) -> str:
    """The DOM after the page's scripts ran, as headless Chromium sees it."""
    result = subprocess.run(
        [*chromium_command(tmp_path / "chromium"), "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_dashboard_lists_jobs_with_their_status(api_url, candles_1h, tmp_path):
    http = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"})
    body = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10, "seed": 1}
    queued = http.post("/api/v2/training/start", json=body).json()["job_id"]
    canceled = http.post("/api/v2/training/start", json={**body, "seed": 2}).json()["job_id"]
    assert http.delete(f"/api/v2/training/jobs/{canceled}").json()["status"] == JobStatus.CANCELED
    assert httpx.get(api_url + "/", follow_redirects=False).headers["location"] == "/dashboard"

    dom = render(f"{api_url}/dashboard#token={TOKEN}", tmp_path)
    assert f'data-job-id="{queued}" data-status="queued"' in dom
    assert f'data-job-id="{canceled}" data-status="canceled"' in dom
    assert "queued 1 · running 0 · failed 0" in dom
    assert ">Cancel<" in dom and ">Retry<" in dom


# Every select on the dashboard: "form id.name".
SELECTS_JS = (
    "Object.fromEntries([...document.querySelectorAll('form select')].map(s =>"
    " [s.form.id + '.' + s.name, {options: [...s.options].map(o => o.value), chosen: s.value}]))"
)


def test_dashboard_selects_offer_the_api_catalogue(api_url, http, browser: Browser):
    """No option list is written in the page or its scripts: each select holds what
    /api/v2/training/catalog lists, with the API's defaults chosen, so a strategy, status or
    priority added in the code reaches the dashboard with no edit to it."""
    catalog = http.get("/api/v2/training/catalog").json()
    page = httpx.get(api_url + "/dashboard").text
    assert "<option" not in page
    strategies = [s["name"] for s in catalog["strategies"]]
    statuses = [s["value"] for s in catalog["job_statuses"]]
    for script in ("common.js", "dashboard.js", "schedules.js"):
        text = httpx.get(f"{api_url}/dashboard/static/{script}").text
        # Statuses still name behaviour there (a failed job's outcome is its error), "queue" is
        # also an element's id and 5m the timeframe offered first: no strategy or priority is named.
        listed = [*strategies, *catalog["priorities"]]
        assert [v for v in listed if f'"{v}"' in text] == [], script

    browser.open(f"{api_url}/dashboard#token={TOKEN}", ready="document.querySelector('#start option') && 1")
    defaults = catalog["defaults"]
    assert browser.evaluate(SELECTS_JS) == {
        "start.strategy": {"options": strategies, "chosen": strategies[0]},
        "start.timeframe": {"options": catalog["timeframes"], "chosen": "5m"},
        "start.priority": {"options": catalog["priorities"], "chosen": defaults["priority"]},
        "filters.status": {"options": ["", *statuses], "chosen": ""},
        "filters.strategy": {"options": ["", *strategies], "chosen": ""},
        "schedule-form.strategy": {"options": strategies, "chosen": strategies[0]},
        "schedule-form.timeframe": {"options": catalog["timeframes"], "chosen": "5m"},
        "schedule-form.misfire_policy": {"options": catalog["misfire_policies"], "chosen": defaults["misfire_policy"]},
        "schedule-form.overlap_policy": {"options": catalog["overlap_policies"], "chosen": defaults["overlap_policy"]},
    }


def test_dashboard_reports_a_wrong_token(api_url, tmp_path):
    dom = render(f"{api_url}/dashboard#token=wrong", tmp_path)
    assert "401 missing or invalid bearer token" in dom
    assert "data-job-id" not in dom


def test_api_docs_render_from_this_server_alone(api_url, tmp_path):
    """Swagger UI is vendored: the page loads nothing from elsewhere, keeps the dashboard's CSP
    and renders this API's routes in a browser with no internet. No /redoc (it needs a CDN)."""
    page = httpx.get(api_url + "/docs")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    sources = [line for line in page.text.splitlines() if "src=" in line or "href=" in line]
    assert sources and all('"/dashboard/static/' in line for line in sources), sources
    assert httpx.get(api_url + "/redoc").status_code == 404
    assert httpx.get(api_url + "/openapi.json").json()["info"]["title"] == "trad"  # no token: not a secret
    dom = render(f"{api_url}/docs", tmp_path)
    assert "/api/v2/training/start" in dom and "/api/v2/training/jobs/{job_id}/progress" in dom
