"""The job page in a real headless Chromium against the real API and a really trained job: the
charts' series and the tables hold the API's numbers, a failed job says why and what to do,
job text is shown as text, and the page is laid out at desktop and phone width."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import update

from app.models import Attempt, Job
from tests.browser import CHROMIUM, DESKTOP, PHONE, Browser, api_process
from tests.conftest import TOKEN, process_env
from tests.support import wait_until
from tests.test_training_e2e import load_demo, start_body

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
HOSTILE = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2"><b>bold</b>'


@pytest.fixture
def api_url(clean):
    with api_process(process_env(clean)) as url:
        yield url


@pytest.fixture
def http(api_url):
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield client


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium")
    yield b
    b.close()


def finished(http, job_id: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: (b := http.get(f"/api/v2/training/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and b,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def page_url(api_url: str, job_id: str) -> str:
    return f"{api_url}/dashboard/jobs/{job_id}#token={TOKEN}"


def numbers(cells: list[dict]) -> dict[tuple[str, str], float | None]:
    return {(c["metric"], c["set"]): (float(c["value"]) if c["value"] != "" else None) for c in cells}


def test_succeeded_job_page_shows_the_api_numbers(api_url, http, db, workers, browser, tmp_path):
    load_demo(db)
    workers("w1")
    job_id = http.post("/api/v2/training/start", json=start_body(n_iterations=20)).json()["job_id"]
    job = finished(http, job_id)
    assert job["status"] == "succeeded", job
    config = http.get(f"/api/v2/training/configurations/{job['configuration_id']}").json()
    trials = http.get(f"/api/v2/training/jobs/{job_id}/trials").json()["items"]

    assert browser.open(page_url(api_url, job_id)) == "1", browser.console

    # The equity chart holds the configuration's curve, point for point.
    equity = browser.evaluate(
        "(c => ({data: c.data, labels: c.series.map(s => s.label)}))(tradPage.charts['equity-chart'])"
    )
    curve = config.get("equity_curve") or config["details"]["equity_curve"]
    if isinstance(curve, dict):  # the full-range curve with its benchmark
        assert equity["data"] == [curve["time"], curve["strategy"], curve["benchmark"]]
        assert equity["labels"][1:] == ["strategy", "buy & hold"]
    else:  # a holdout-only curve of [ms, equity] pairs
        assert equity["data"] == [[p[0] for p in curve], [p[1] for p in curve]]
        assert equity["labels"][1:] == ["strategy"]

    # The optimisation history: one point per trial and the running best.
    history = browser.evaluate("tradPage.charts['trials-chart'].data")
    scores = [t["score"] if t["feasible"] else None for t in trials]
    best, running = None, []
    for s in scores:
        best = s if s is not None and (best is None or s > best) else best
        running.append(best)
    assert history == [[t["number"] for t in trials], scores, running]
    assert len(history[0]) == 20 and running[-1] == max(s for s in scores if s is not None)

    # Train vs validation: every metric cell carries the API's value.
    cells = browser.evaluate(
        "[...document.querySelectorAll('#metrics td[data-set]')].map(td => "
        "({metric: td.closest('tr').dataset.metric, set: td.dataset.set,"
        " value: td.dataset.value, text: td.textContent}))"
    )
    shown = numbers(cells)
    for key, value in config["train_metrics"].items():
        assert shown[(key, "train")] == value, key
    for key, value in config["validation_metrics"].items():
        assert shown[(key, "validation")] == value, key
    trades_text = next(c["text"] for c in cells if c["metric"] == "n_trades" and c["set"] == "validation")
    assert trades_text == str(config["validation_metrics"]["n_trades"])

    # Parameters, the verdict, the attempts, the status.
    params = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#params tr[data-param]')].map(tr => "
        "[tr.dataset.param, JSON.parse(tr.cells[1].dataset.value)]))"
    )
    assert params == config["params"]
    verdict = browser.evaluate("document.getElementById('verdict').textContent")
    if config.get("statistics"):
        assert verdict == config["statistics"]["verdict"]
    elif config["overfit"]:
        assert verdict == "Overfitting suspected: " + config["overfit_reason"]
    else:
        assert verdict == "No overfitting detected by the validation check."
    n_trials = browser.evaluate("document.querySelector('#stats tr[data-stat=n_trials] td.num').dataset.value")
    assert int(n_trials) == 20
    attempts = browser.evaluate(
        "[...document.querySelectorAll('#attempts tbody tr')].map(tr => tr.cells[2].textContent)"
    )
    assert attempts == ["w1"]
    assert browser.evaluate("document.getElementById('status').textContent") == "succeeded"
    assert browser.evaluate("document.getElementById('failure').hidden") is True

    shots = [
        browser.screenshot(tmp_path / "job-succeeded-desktop.png"),
    ]
    browser.open(page_url(api_url, job_id), size=PHONE)
    # At phone width nothing is wider than the screen except inside the scrolling table boxes.
    overflow = browser.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    assert browser.evaluate("tradPage.charts['equity-chart'].width") <= PHONE[0]
    shots.append(browser.screenshot(tmp_path / "job-succeeded-phone.png"))
    assert all(p.stat().st_size > 10_000 for p in shots)


def test_failed_job_page_says_why_and_shows_job_text_as_text(api_url, http, db, workers, browser, tmp_path):
    workers("w1")
    job_id = http.post("/api/v2/training/start", json=start_body(symbol="NODATA")).json()["job_id"]
    job = finished(http, job_id)
    assert job["status"] == "failed" and job["error"]["type"] == "JobInputError"
    # Symbols are validated, so the free-text fields carry the HTML: the error and the message.
    message = "no candles for NODATA " + HOSTILE
    db.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(error_message=message, message=HOSTILE))
    db.execute(update(Attempt).where(Attempt.job_id == uuid.UUID(job_id)).values(error_message=message))
    db.commit()

    assert browser.open(page_url(api_url, job_id)) == "1", browser.console
    failure = browser.evaluate(
        "({hidden: document.getElementById('failure').hidden,"
        " type: document.getElementById('error-type').textContent,"
        " message: document.getElementById('error-message').textContent,"
        " hint: document.getElementById('error-hint').textContent,"
        " status: document.getElementById('status').textContent,"
        " shown: document.getElementById('message').textContent,"
        " attempt: document.querySelector('#attempts tbody tr').cells[6].textContent,"
        " results: document.getElementById('results').hidden})"
    )
    assert failure == {
        "hidden": False,
        "type": "JobInputError",
        "message": message,
        "hint": failure["hint"],
        "status": "failed",
        "shown": HOSTILE,
        "attempt": "JobInputError: " + message,
        "results": True,
    }
    assert "trad candles list" in failure["hint"]
    assert browser.evaluate("window.injected === undefined && document.querySelectorAll('b, img').length === 0")
    assert browser.evaluate("[...document.querySelectorAll('#actions button')].map(b => b.textContent)") == ["Retry"]
    browser.screenshot(tmp_path / "job-failed-desktop.png")
    browser.open(page_url(api_url, job_id), size=PHONE)
    assert browser.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    browser.screenshot(tmp_path / "job-failed-phone.png")

    # The list shows the job's training columns and the error only as text too.
    ready = "document.querySelector('#jobs tr[data-job-id]') && 1"
    browser.open(f"{api_url}/dashboard#token={TOKEN}", size=DESKTOP, ready=ready)
    row = browser.evaluate(
        f"(r => ({{cells: [...r.cells].map(c => c.textContent), title: r.title, "
        f"link: r.querySelector('a').getAttribute('href')}}))(document.querySelector('tr[data-job-id=\"{job_id}\"]'))"
    )
    assert row["cells"][1:6] == ["failed", "sma_crossover", "NODATA", "5m", "JobInputError"]
    assert row["cells"][7] == job["phase"] and row["title"] == "JobInputError: " + message
    assert row["link"] == f"/dashboard/jobs/{job_id}"
    assert browser.evaluate("window.injected === undefined && document.querySelectorAll('b, img').length === 0")
    workers_shown = browser.evaluate("[...document.querySelectorAll('#workers li')].map(li => li.dataset.worker)")
    assert workers_shown == ["w1"]
    browser.screenshot(tmp_path / "list-desktop.png")
    browser.open(f"{api_url}/dashboard#token={TOKEN}", size=PHONE, ready=ready)
    browser.screenshot(tmp_path / "list-phone.png")


def test_unknown_job_and_wrong_token(api_url, browser):
    missing = uuid.uuid4()
    assert browser.open(f"{api_url}/dashboard/jobs/{missing}#token={TOKEN}") == "error"
    assert browser.evaluate("document.getElementById('error').textContent") == f"404 no job with id {missing}"
    assert browser.open(f"{api_url}/dashboard/jobs/{missing}#token=wrong") == "error"
    shown = browser.evaluate(
        "({error: document.getElementById('error').textContent, auth: document.getElementById('auth').hidden})"
    )
    assert shown == {"error": "401 missing or invalid bearer token", "auth": False}
