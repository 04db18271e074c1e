"""The job page in a real headless Chromium against the real API and a really trained job: the
charts' series and the tables hold the API's numbers, a failed job says why and what to do,
job text is shown as text, and the page is laid out at desktop and phone width."""

from __future__ import annotations

import itertools
import uuid

import httpx
import numpy as np
import pytest
from sqlalchemy import delete, update

from app.engine.backtest import Costs, backtest
from app.engine.strategies import get_strategy
from app.engine.validate import split
from app.models import Attempt, Candle, Job, TrainedConfiguration
from app.services import candles as candles_service
from tests.browser import CHROMIUM, DESKTOP, PHONE, Browser, api_process
from tests.support import TOKEN, process_env, wait_until
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


def trained_job(http, db, workers) -> tuple[dict, dict]:
    """A training job really run by a worker on the demo candles: its detail and configuration."""
    load_demo(db)
    workers("w1")
    job_id = http.post("/api/v2/training/start", json=start_body(n_iterations=20)).json()["job_id"]
    job = finished(http, job_id)
    assert job["status"] == "succeeded", job
    return job, http.get(f"/api/v2/training/configurations/{job['configuration_id']}").json()


def test_succeeded_job_page_shows_the_api_numbers(api_url, http, db, workers, browser, tmp_path):
    job, config = trained_job(http, db, workers)
    job_id = job["job_id"]
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
    # Accepted while its candles exist, then they are gone when the worker runs it.
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 300, seed=1)
    db.commit()
    job_id = http.post("/api/v2/training/start", json=start_body(timeframe="1h")).json()["job_id"]
    db.execute(delete(Candle))
    db.commit()
    workers("w1")
    job = finished(http, job_id)
    assert job["status"] == "failed" and job["error"]["type"] == "JobInputError", job
    # Symbols are validated, so the free-text fields carry the HTML: the error and the message.
    message = job["error"]["message"] + " " + HOSTILE
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
    assert row["cells"][1:6] == ["failed", "sma_crossover", "BTCUSDT", "1h", "JobInputError"]
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


def contract_results(db, config: dict) -> dict:
    """The result fields the configuration contract adds (full-range equity with buy-and-hold,
    the boundary, walk-forward windows, trades, benchmark metrics, statistics), computed here
    from the job's own candles with the engine's backtester, for a configuration that does not
    carry them itself."""
    candles = candles_service.load(db, "BTCUSDT", "5m", None, None)
    train, holdout = split(candles, 0.2)
    strategy = get_strategy(config["strategy"])
    whole = backtest(candles, strategy.signals(candles, config["params"]), Costs())
    step = max(1, len(candles) // 1500)
    picked = np.arange(0, len(candles), step)
    times = candles.open_time
    cut = len(train)
    edges = np.linspace(cut, len(candles) - 1, 4).astype(int)
    windows = [
        {
            "index": i,
            "in_sample_start": int(times[0]),
            "in_sample_end": int(times[a - 1]),
            "out_of_sample_start": int(times[a]),
            "out_of_sample_end": int(times[b]),
            "params": config["params"],
            "in_sample_score": 1.5 - i / 10,
            "out_of_sample_score": None if i == 1 else 0.25 * i,
        }
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    validation = backtest(holdout, strategy.signals(holdout, config["params"]), Costs())
    t = validation.trades
    trades = [
        {
            "entry_time": int(holdout.open_time[t["entry"][i]]),
            "exit_time": int(holdout.open_time[min(t["exit"][i], len(holdout) - 1)]),
            "side": "long" if t["side"][i] > 0 else "short",
            "entry_price": float(t["entry_price"][i]),
            "exit_price": float(t["exit_price"][i]),
            "return": float(t["ret"][i]),
        }
        for i in range(len(t["ret"]))
    ]
    hold = {
        name: backtest(part, np.ones(len(part)), Costs()).metrics
        for name, part in (("train", train), ("validation", holdout))
    }
    return {
        "validation_mode": "walk_forward",
        "min_trades": 1,
        "equity_curve": {
            "time": [int(times[i]) for i in picked],
            "strategy": [float(whole.equity[i]) for i in picked],
            "benchmark": [float(candles.close[i] / candles.close[0]) for i in picked],
        },
        "validation_start": int(times[cut]),
        "windows": windows,
        "trades": trades,
        "benchmark_metrics": hold,
        "excess": {
            name: {
                "total_return": config[f"{name}_metrics"]["total_return"] - hold[name]["total_return"],
                "sharpe": None,
            }
            for name in ("train", "validation")
        },
        "statistics": {
            "n_trials": 20,
            "deflated_sharpe": 0.4213,
            "pbo": 0.625,
            "walk_forward_efficiency": 0.31,
            "verdict": "Likely overfitted: <b>the best of 20</b> sets is not convincing once the search is counted.",
            "overfit": True,
            "reason": "deflated Sharpe 0.42 < 0.95",
        },
        "param_importances": {name: 1 / len(config["params"]) for name in config["params"]},
    }


def test_walk_forward_results_with_benchmark_windows_trades_and_statistics(
    api_url, http, db, workers, browser, tmp_path
):
    job, config = trained_job(http, db, workers)
    job_id = job["job_id"]
    if "statistics" not in config:
        extra = contract_results(db, config)
        db.execute(
            update(TrainedConfiguration)
            .where(TrainedConfiguration.id == uuid.UUID(config["id"]))
            .values(details={**config["details"], **extra})
        )
        db.commit()
        config = http.get(f"/api/v2/training/configurations/{job['configuration_id']}").json()
        config.update(config["details"])
    detail = http.get(f"/api/v2/training/jobs/{job_id}").json()
    assert detail["param_importances"] == config["param_importances"]

    assert browser.open(page_url(api_url, job_id)) == "1", browser.console
    chart = browser.evaluate(
        "(c => ({data: c.data, labels: c.series.map(s => s.label)}))(tradPage.charts['equity-chart'])"
    )
    curve = config["equity_curve"]
    assert chart == {
        "data": [curve["time"], curve["strategy"], curve["benchmark"]],
        "labels": ["Time", "strategy", "buy & hold"],
    }

    cells = numbers(
        browser.evaluate(
            "[...document.querySelectorAll('#metrics td[data-set]')].map(td => "
            "({metric: td.closest('tr').dataset.metric, set: td.dataset.set, value: td.dataset.value}))"
        )
    )
    for name in ("train", "validation"):
        for key, value in config["benchmark_metrics"][name].items():
            assert cells[(key, f"benchmark-{name}")] == value, (name, key)

    stats = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#stats tr[data-stat]')].map(tr => "
        "[tr.dataset.stat, tr.cells[1].dataset.value]))"
    )
    s = config["statistics"]
    assert float(stats["deflated_sharpe"]) == s["deflated_sharpe"] and float(stats["pbo"]) == s["pbo"]
    assert float(stats["walk_forward_efficiency"]) == s["walk_forward_efficiency"]
    assert int(stats["n_trials"]) == s["n_trials"] and stats["overfit"] == "1"
    assert float(stats["excess_validation"]) == config["excess"]["validation"]["total_return"]
    assert int(stats["min_trades"]) == config["min_trades"]
    verdict = browser.evaluate("(v => ({text: v.textContent, cls: v.className, tags: v.children.length}))(verdict)")
    assert verdict == {"text": s["verdict"], "cls": "overfit", "tags": 0}

    windows = browser.evaluate(
        "[...document.querySelectorAll('#windows tr[data-window]')].map(tr => [+tr.dataset.window, "
        "...[4, 5].map(i => tr.cells[i].dataset.value === '' ? null : +tr.cells[i].dataset.value)])"
    )
    assert windows == [[w["index"], w["in_sample_score"], w["out_of_sample_score"]] for w in config["windows"]]
    assert len(windows) == 3
    trades = browser.evaluate(
        "[...document.querySelectorAll('#trades tr[data-trade]')].map(tr => "
        "[tr.cells[2].textContent, +tr.cells[3].dataset.value, +tr.cells[4].dataset.value, +tr.cells[5].dataset.value])"
    )
    expected = [[t["side"], t["entry_price"], t["exit_price"], t["return"]] for t in config["trades"]]
    assert trades == expected[:100] and len(trades) == min(100, len(expected))
    importances = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#params tr[data-param]')].map(tr => "
        "[tr.dataset.param, +tr.cells[2].dataset.value]))"
    )
    assert importances == config["param_importances"]

    browser.screenshot(tmp_path / "job-walk-forward-desktop.png")
    browser.open(page_url(api_url, job_id), size=PHONE)
    assert browser.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    browser.screenshot(tmp_path / "job-walk-forward-phone.png")


def test_page_follows_a_running_job_to_its_results(api_url, http, db, workers, browser):
    load_demo(db)
    job_id = http.post("/api/v2/training/start", json=start_body(n_iterations=40)).json()["job_id"]
    assert browser.open(page_url(api_url, job_id)) == "1"
    assert browser.evaluate("document.getElementById('status').textContent") == "queued"
    assert browser.evaluate("document.getElementById('results').hidden") is True
    workers("w1")
    seen = set()

    def done():
        state = browser.evaluate(
            "({status: document.getElementById('status').textContent, percent: bar.value,"
            " results: !document.getElementById('results').hidden,"
            " trials: tradPage.charts['trials-chart'] ? tradPage.charts['trials-chart'].data[0].length : 0})"
        )
        seen.add(state["status"])
        return state if state["results"] or state["status"] in ("failed", "canceled") else None

    final = wait_until(done, timeout=120, interval=0.2, what="the page to show the results")
    assert final == {"status": "succeeded", "percent": 100, "results": True, "trials": 40}
    assert "queued" in seen and "succeeded" in seen


def test_list_filters_and_pages_in_the_browser(api_url, http, db, browser):
    candles_service.generate_synthetic(db, "BTCUSDT", "1h", 300, seed=1)
    db.commit()
    strategies = ["sma_crossover" if i % 3 else "rsi_reversion" for i in range(27)]
    ids = [
        http.post("/api/v2/training/start", json=start_body(strategy=s, timeframe="1h", seed=i)).json()["job_id"]
        for i, s in enumerate(strategies)
    ]
    http.delete(f"/api/v2/training/jobs/{ids[0]}")
    rows = "[...jobs.rows].map(r => [r.dataset.jobId, r.dataset.status, r.cells[2].textContent])"

    def shown(expected_range: str):
        def check():
            state = browser.evaluate(f"({{range: document.getElementById('range').textContent, rows: {rows}}})")
            return state if state["range"] == expected_range else None

        return wait_until(check, timeout=20, what=f"the list to show {expected_range}")

    browser.open(f"{api_url}/dashboard#token={TOKEN}", ready="document.querySelector('#jobs tr') && 1")
    first = shown("1–25 of 27")
    assert [r[0] for r in first["rows"]] == ids[::-1][:25]  # newest first
    browser.evaluate("document.getElementById('next').click()")
    second = shown("26–27 of 27")
    assert [r[0] for r in second["rows"]] == ids[1::-1]
    assert browser.evaluate("document.getElementById('next').disabled") is True

    browser.evaluate("(f => { f.strategy.value = 'rsi_reversion'; f.dispatchEvent(new Event('change')); })(filters)")
    rsi = shown("1–9 of 9")
    assert {r[2] for r in rsi["rows"]} == {"rsi_reversion"}
    assert [r[0] for r in rsi["rows"]] == [i for i, s in zip(ids, strategies, strict=True) if s == "rsi_reversion"][
        ::-1
    ]
    browser.evaluate("(f => { f.status.value = 'canceled'; f.dispatchEvent(new Event('change')); })(filters)")
    canceled = shown("1–1 of 1")
    assert canceled["rows"] == [[ids[0], "canceled", "rsi_reversion"]]
