"""The job page in a real headless Chromium against the real API and a really trained job: the
charts' series and the tables hold the API's numbers, a failed job says why and what to do,
job text is shown as text, and the page is laid out at desktop and phone width."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, update

from app.models import Attempt, Candle, Job
from app.services import candles as candles_service
from tests.browser import CHROMIUM, DESKTOP, PHONE
from tests.support import TOKEN, load_demo, start_body, wait_until

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
HOSTILE = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2"><b>bold</b>'


def finished(http, job_id: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: (b := http.get(f"/api/v2/training/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and b,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def page_url(api_url: str, job_id: str) -> str:
    return f"{api_url}/dashboard/jobs/{job_id}#token={TOKEN}"


def running_best(trials: list[dict]) -> list[float | None]:
    """The best feasible score so far, starting again with each walk-forward window."""
    best, window, out = None, None, []
    for t in trials:
        if t["window"] != window:
            best, window = None, t["window"]
        if t["feasible"] and t["score"] is not None and (best is None or t["score"] > best):
            best = t["score"]
        out.append(best)
    return out


def numbers(cells: list[dict]) -> dict[tuple[str, str], float | None]:
    return {(c["metric"], c["set"]): (float(c["value"]) if c["value"] != "" else None) for c in cells}


def trained_job(http, db, workers, **request) -> tuple[dict, dict]:
    """A training job really run by a worker on the demo candles: its detail and configuration."""
    load_demo(db)
    workers("w1")
    # rsi_reversion with 10 trades at least is viable on these candles, holdout or walk-forward.
    body = start_body(**{"strategy": "rsi_reversion", "n_iterations": 20, "min_trades": 10, **request})
    job_id = http.post("/api/v2/training/start", json=body).json()["job_id"]
    job = finished(http, job_id)
    assert job["status"] == "succeeded", job
    return job, http.get(f"/api/v2/training/configurations/{job['configuration_id']}").json()


def test_succeeded_job_page_shows_the_api_numbers(api_url, http, db, workers, browser, tmp_path):
    job, config = trained_job(http, db, workers, slippage_bps=0.5)
    assert config["fee_bps"] == 10.0 and config["slippage_bps"] == 0.5
    job_id = job["job_id"]
    trials = http.get(f"/api/v2/training/jobs/{job_id}/trials").json()["items"]

    assert browser.open(page_url(api_url, job_id)) == "1", browser.console

    # The equity chart holds the configuration's curve, point for point.
    equity = browser.evaluate(
        "(c => ({data: c.data, labels: c.series.map(s => s.label)}))(tradPage.charts['equity-chart'])"
    )
    curve = config["equity_curve"]
    assert equity == {
        "data": [curve["time"], curve["strategy"], curve["benchmark"]],
        "labels": ["Time", "strategy", "buy & hold"],
    }
    note = browser.evaluate("document.getElementById('equity-note').textContent")
    boundary = datetime.fromtimestamp(config["validation_start"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"first validation bar, {boundary}" in note and "walk-forward" not in note

    # The optimisation history: one point per trial and the running best.
    history = browser.evaluate("tradPage.charts['trials-chart'].data")
    scores = [t["score"] if t["feasible"] else None for t in trials]
    running = running_best(trials)
    assert history == [[t["number"] for t in trials], scores, running]
    assert len(history[0]) == 20 and running[-1] == max(s for s in scores if s is not None)

    # Train vs validation: every metric cell carries the API's value.
    cells = browser.evaluate(
        "[...document.querySelectorAll('#metrics td[data-set]')].map(td => "
        "({metric: td.closest('tr').dataset.metric, set: td.dataset.set,"
        " value: td.dataset.value, text: td.textContent, reason: td.dataset.reason || ''}))"
    )
    shown = numbers(cells)
    sets = {"train": config["train_metrics"], "validation": config["validation_metrics"]}
    sets.update({f"benchmark-{name}": m for name, m in config["benchmark_metrics"].items()})
    for name, metrics in sets.items():
        for key, value in metrics.items():
            if key != "null_reasons":
                assert shown[(key, name)] == value, (name, key)
    # An undefined figure shows why, in the engine's words, instead of a blank: the demo's
    # holdout spans a few days, too short for a CAGR or a Calmar ratio.
    reasons = {(c["metric"], c["set"]): c["text"] for c in cells if c["reason"]}
    expected = {(k, name): why for name, m in sets.items() for k, why in m["null_reasons"].items()}
    assert reasons == expected
    assert config["validation_metrics"]["cagr"] is None and config["validation_metrics"]["total_return"] is not None
    assert "days of data, under the 90 days" in reasons[("cagr", "validation")]
    assert "given only over 90 days" in browser.evaluate("document.getElementById('metrics-note').textContent")
    # The costs it was trained with.
    costs = browser.evaluate(
        "Object.fromEntries(['fee_bps', 'slippage_bps'].map(k => [k, "
        "document.querySelector(`#stats tr[data-stat=${k}] td.num`).dataset.value]))"
    )
    assert {k: float(v) for k, v in costs.items()} == {"fee_bps": config["fee_bps"], "slippage_bps": 0.5}
    trades_text = next(c["text"] for c in cells if c["metric"] == "n_trades" and c["set"] == "validation")
    assert trades_text == str(config["validation_metrics"]["n_trades"])

    # Parameters, the verdict, the attempts, the status.
    params = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#params tr[data-param]')].map(tr => "
        "[tr.dataset.param, JSON.parse(tr.cells[1].dataset.value)]))"
    )
    assert params == config["params"]
    verdict = browser.evaluate("document.getElementById('verdict').textContent")
    assert verdict == config["statistics"]["verdict"] and verdict
    # The headline is the saved configuration's own score, not the best training trial's.
    assert browser.evaluate("document.getElementById('best-label').textContent") == "Out-of-sample score"
    shown_score = browser.evaluate("document.getElementById('best').textContent")
    assert shown_score == ("–" if config["score"] is None else f"{config['score']:.3f}")
    dsr = browser.evaluate("document.querySelector('#stats tr[data-stat=deflated_sharpe] td.num').dataset.value")
    assert float(dsr) == config["statistics"]["deflated_sharpe"]
    assert browser.evaluate("document.getElementById('windows-panel').hidden") is True  # a holdout has none
    # The bias checks it passed, with the API's figures.
    checks = config["bias_checks"]
    assert checks["passed"] is True and checks["params_checked"] == 1
    bias = browser.evaluate(
        "({hidden: document.getElementById('bias-panel').hidden,"
        " verdict: document.getElementById('bias-verdict').textContent,"
        " rows: Object.fromEntries([...document.querySelectorAll('#bias tr[data-check]')].map(tr => "
        "[tr.dataset.check, [tr.querySelector('td.num').dataset.value, tr.querySelector('td.num').textContent,"
        " tr.querySelector('.meaning').textContent]]))})"
    )
    assert bias["hidden"] is False and bias["verdict"].startswith("Passed: no look-ahead")
    tried, times = checks["lookahead"]["bars_tried"], checks["lookahead"]["times_tried"]
    assert bias["rows"]["lookahead"][:2] == [str(len(tried)), str(len(tried))]
    assert all(t in bias["rows"]["lookahead"][2] for t in times)
    histories = checks["warmup"]["history_lengths"]
    assert bias["rows"]["warmup"][:2] == [str(len(histories)), ", ".join(map(str, histories)) + " bars"]
    assert f"declared warm-up {checks['warmup']['declared']} bars" in bias["rows"]["warmup"][2]
    assert float(bias["rows"]["seconds"][0]) == checks["seconds"]
    n_trials = browser.evaluate("document.querySelector('#stats tr[data-stat=n_trials] td.num').dataset.value")
    assert int(n_trials) == config["statistics"]["n_trials"]
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


@pytest.mark.parametrize(
    ("strategy", "error_type", "hint"),
    [
        ("tomorrows_crossover", "LookaheadBias", "reads data after the bar"),
        ("ema_one_bar", "WarmupTooShort", "warm-up"),
    ],
)
def test_a_biased_job_page_says_what_to_fix(
    api_url, db, settings, monkeypatch, browser, tmp_path, strategy, error_type, hint
):
    """A job whose strategy failed a bias check (run in a process forked from this one, where the
    biased strategies are registered) shows the error, the bar and what to do; no results."""
    from app.engine.registry import strategies as installed
    from tests.training.test_bias import BIASED, run_in_fork, submit

    for name, biased in BIASED.items():
        monkeypatch.setitem(installed(), name, biased)
    load_demo(db, bars=8_000)
    job_id = submit(db, settings, strategy)
    run_in_fork(settings, job_id)
    assert browser.open(page_url(api_url, str(job_id))) == "1", browser.console
    failure = browser.evaluate(
        "({hidden: document.getElementById('failure').hidden,"
        " type: document.getElementById('error-type').textContent,"
        " message: document.getElementById('error-message').textContent,"
        " hint: document.getElementById('error-hint').textContent,"
        " results: document.getElementById('results').hidden,"
        " actions: [...document.querySelectorAll('#actions button')].map(b => b.textContent)})"
    )
    assert failure["hidden"] is False and failure["type"] == error_type and failure["results"] is True
    assert failure["message"].startswith(
        ("look-ahead bias in " if error_type == "LookaheadBias" else "warm-up too short in ") + strategy
    )
    assert "the position at " in failure["message"] and "parameters {" in failure["message"]
    assert hint in failure["hint"] and "Nothing was saved" in failure["hint"]
    assert "trad strategies check" in failure["hint"]
    browser.screenshot(tmp_path / f"job-{error_type}-desktop.png")


def test_unknown_job_and_wrong_token(api_url, browser):
    missing = uuid.uuid4()
    assert browser.open(f"{api_url}/dashboard/jobs/{missing}#token={TOKEN}") == "error"
    assert browser.evaluate("document.getElementById('error').textContent") == f"404 no job with id {missing}"
    assert browser.open(f"{api_url}/dashboard/jobs/{missing}#token=wrong") == "error"
    shown = browser.evaluate(
        "({error: document.getElementById('error').textContent, auth: document.getElementById('auth').hidden})"
    )
    assert shown == {"error": "401 missing or invalid bearer token", "auth": False}


def test_walk_forward_results_with_benchmark_windows_trades_and_statistics(
    api_url, http, db, workers, browser, tmp_path
):
    validation = {"mode": "walk_forward", "windows": 3}
    job, config = trained_job(http, db, workers, n_iterations=8, validation=validation)
    job_id = job["job_id"]
    assert config["validation_mode"] == "walk_forward" and len(config["windows"]) == 3, config
    assert config["trades"] and config["benchmark_metrics"] and config["statistics"]["verdict"]
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
            if key != "null_reasons":
                assert cells[(key, f"benchmark-{name}")] == value, (name, key)

    end_ms = datetime.fromisoformat(config["data_end"].replace("Z", "+00:00")).timestamp() * 1000
    days = (end_ms - config["validation_start"]) / 86_400_000
    assert days < 365, "the demo's validation range is shorter than a year"
    note = browser.evaluate("document.getElementById('metrics-note').textContent")
    assert days < 90 and config["validation_metrics"]["cagr"] is None
    assert "given only over 90 days or more" in note, note

    stats = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#stats tr[data-stat]')].map(tr => "
        "[tr.dataset.stat, tr.cells[1].dataset.value]))"
    )
    s = config["statistics"]
    shown = {key: None if value == "" else float(value) for key, value in stats.items()}
    for key in ("deflated_sharpe", "pbo", "walk_forward_efficiency", "n_trials"):
        assert shown[key] == s[key], key
    assert shown["overfit"] == (1 if s["overfit"] else 0) and shown["min_trades"] == config["min_trades"]
    for name in ("train", "validation"):
        assert shown[f"excess_{name}"] == config["excess"][name]["total_return"]
    verdict = browser.evaluate("(v => ({text: v.textContent, cls: v.className, tags: v.children.length}))(verdict)")
    assert verdict == {"text": s["verdict"], "cls": "kind-" + s["kind"], "tags": 0}

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

    trials = http.get(f"/api/v2/training/jobs/{job_id}/trials").json()["items"]
    assert [t["window"] for t in trials] == [0] * 8 + [1] * 8 + [2] * 8
    history = browser.evaluate("tradPage.charts['trials-chart'].data")
    assert history == [
        [t["number"] for t in trials],
        [t["score"] if t["feasible"] else None for t in trials],
        running_best(trials),
    ]

    browser.screenshot(tmp_path / "job-walk-forward-desktop.png")
    browser.open(page_url(api_url, job_id), size=PHONE)
    assert browser.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    browser.screenshot(tmp_path / "job-walk-forward-phone.png")


def test_page_follows_a_running_job_to_its_results(api_url, http, db, workers, browser):
    load_demo(db)
    body = start_body(strategy="rsi_reversion", n_iterations=40, min_trades=10)
    job_id = http.post("/api/v2/training/start", json=body).json()["job_id"]
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
