"""The `candles_refresh` job kind against the local exchange (tests/exchange_server.py), run by
real workers: `POST /api/v2/candles/refresh`, its progress, listing and cancel, `GET
/api/v2/candles`; a schedule whose template asks for `refresh` (fired under a chosen clock):
the training job runs on the bars fetched just before it, and a failing exchange fails the fire
with nothing trained; the crash between the refresh's success and its training job's send."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app import queue
from app.clock import utcnow
from app.models import Candle, Job, ScheduleFire, TrainedConfiguration
from app.repositories import candles as candles_repo
from app.services import dispatch, lifecycle, maintenance
from app.services import schedules as schedules_service
from app.status import FireOutcome, JobStatus
from tests.exchange_server import ExchangeServer, kline
from tests.support import wait_until

HOUR = 3_600_000
NOW_MS = int(time.time() * 1000) // HOUR * HOUR
FIRST_MS = NOW_MS - 40 * 24 * HOUR  # the local exchange's first hourly bar, 40 days ago
REFRESH = "/api/v2/candles/refresh"
SCHEDULES = "/api/v2/training/schedules"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer(first_ms=FIRST_MS, page_limit=100) as server:
        yield server


def exchange_env(exchange: ExchangeServer, **more: str) -> dict[str, str]:
    return {"EXCHANGE_BASE_URL": exchange.url, "FETCH_RETRY_BUDGET_S": "1", **more}


def job_row(db, job_id) -> Job:
    db.expire_all()
    return db.get(Job, uuid.UUID(str(job_id)))


def finished(db, job_id) -> Job:
    return wait_until(
        lambda: (j := job_row(db, job_id)) is not None and JobStatus(j.status).is_finished and j,
        timeout=120,
        interval=0.2,
        what=f"job {job_id} to finish",
    )


def stored_ms(db, symbol: str = "BTCUSDT", timeframe: str = "1h") -> list[int]:
    db.expire_all()
    rows = db.scalars(
        select(Candle.open_time)
        .where(Candle.symbol == symbol, Candle.timeframe == timeframe)
        .order_by(Candle.open_time)
    )
    return [int(t.timestamp() * 1000) for t in rows]


def closed_before(until_ms: int) -> int:
    """The open time of the last bar closed by now and opening before `until_ms`."""
    now = int(time.time() * 1000)
    return min(-(-until_ms // HOUR) * HOUR - HOUR, now // HOUR * HOUR - HOUR)


def test_refresh_job_fetches_the_range_with_progress_and_is_listed(client, db, clean, workers, exchange):
    workers("w1", env_overrides=exchange_env(exchange))
    since, until = FIRST_MS, FIRST_MS + 700 * HOUR
    body = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "since": iso(since), "until": iso(until)}
    accepted = client.post(REFRESH, json=body, headers={"Idempotency-Key": "refresh-1"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert accepted.json()["progress_url"].endswith(f"/api/v2/training/jobs/{job_id}/progress")
    again = client.post(REFRESH, json=body, headers={"Idempotency-Key": "refresh-1"})
    assert again.status_code == 200 and again.json()["job_id"] == job_id
    other = client.post(REFRESH, json={**body, "until": iso(until + HOUR)}, headers={"Idempotency-Key": "refresh-1"})
    assert other.status_code == 409

    job = finished(db, job_id)
    assert job.status == JobStatus.SUCCEEDED, (job.error_type, job.error_message)
    assert stored_ms(db) == [since + i * HOUR for i in range(700)]  # the exchange's bars, every one
    bar = db.get(Candle, ("BTCUSDT", "1h", datetime.fromtimestamp((since + 5 * HOUR) / 1000, UTC)))
    assert (bar.close, bar.source) == (float(kline(since + 5 * HOUR, HOUR)[4]), "binance")
    assert len(exchange.state.klines()) == 7  # pages of 100

    progress = client.get(f"/api/v2/training/jobs/{job_id}/progress").json()
    assert progress["percent"] == 100.0 and progress["iteration"] == 700 and progress["phase"] == "fetching"
    history = client.get(f"/api/v2/training/jobs/{job_id}/progress/history").json()["items"]
    assert history and all(e["phase"] == "fetching" for e in history)
    assert history[-1]["message"].startswith("700 new bars of 700 fetched from ")

    listed = client.get("/api/v2/training/jobs", params={"kind": "candles_refresh"}).json()
    assert [j["job_id"] for j in listed["items"]] == [job_id]
    assert client.get("/api/v2/training/jobs", params={"kind": "training"}).json()["items"] == []

    [series] = client.get("/api/v2/candles").json()["items"]
    assert (series["symbol"], series["timeframe"], series["bars"], series["sources"]) == (
        "BTCUSDT",
        "1h",
        700,
        ["binance"],
    )
    assert datetime.fromisoformat(series["first"]) == datetime.fromtimestamp(since / 1000, UTC)
    assert datetime.fromisoformat(series["last"]) == datetime.fromtimestamp((since + 699 * HOUR) / 1000, UTC)
    assert datetime.fromisoformat(series["last_refresh_at"]) == job.finished_at

    # A second refresh without `since` resumes after the last stored bar: nothing new before `until`.
    again = client.post(REFRESH, json={k: v for k, v in body.items() if k != "since"})
    assert finished(db, again.json()["job_id"]).status == JobStatus.SUCCEEDED
    assert len(exchange.state.klines()) == 7 and len(stored_ms(db)) == 700


def test_refresh_can_be_canceled_and_retried_and_keeps_the_pages_stored(client, db, clean, workers, exchange):
    exchange.state.faults.extend([("429", 2)] * 3)  # each page waits out a Retry-After: time to cancel
    workers("w1", env_overrides=exchange_env(exchange, FETCH_RETRY_BUDGET_S="30"))
    body = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "since": iso(FIRST_MS)}
    job_id = client.post(REFRESH, json=body).json()["job_id"]
    wait_until(lambda: job_row(db, job_id).status == JobStatus.RUNNING, timeout=60, what="the refresh to run")
    assert client.delete(f"/api/v2/training/jobs/{job_id}").status_code == 202
    job = finished(db, job_id)
    assert job.status == JobStatus.CANCELED
    kept = stored_ms(db)
    assert kept == [FIRST_MS + i * HOUR for i in range(len(kept))]  # whole pages, from the first bar
    retried = client.post(f"/api/v2/training/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert finished(db, job_id).status == JobStatus.SUCCEEDED
    last = closed_before(int(time.time() * 1000) + HOUR)
    assert stored_ms(db)[-1] >= last - HOUR and stored_ms(db) == [
        FIRST_MS + i * HOUR for i in range(len(stored_ms(db)))
    ]


def test_unknown_symbol_fails_at_once_and_an_unanswering_exchange_after_its_attempts(
    client, db, clean, workers, exchange
):
    workers("w1", env_overrides=exchange_env(exchange))
    unknown = client.post(
        REFRESH, json={"exchange": "binance", "symbol": "DOGE/EUR", "timeframe": "1h", "since": iso(FIRST_MS)}
    )
    job = finished(db, unknown.json()["job_id"])
    assert (job.status, job.error_type, job.attempts) == (JobStatus.FAILED, "UnknownSymbol", 1)
    assert "DOGE/EUR" in job.error_message

    exchange.state.faults.extend([("5xx", 503)] * 1000)
    down = client.post(
        REFRESH, json={"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "since": iso(FIRST_MS)}
    )
    job = finished(db, down.json()["job_id"])
    assert (job.status, job.error_type, job.attempts) == (
        JobStatus.FAILED,
        "ExchangeUnavailable",
        clean.candles_refresh_max_attempts,
    )
    assert stored_ms(db) == []


def _fires(db, schedule_id: str) -> list[ScheduleFire]:
    db.expire_all()
    return list(db.scalars(select(ScheduleFire).where(ScheduleFire.schedule_id == uuid.UUID(schedule_id))))


def _template(**refresh) -> dict:
    return {
        "strategy": "sma_crossover",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "n_iterations": 3,
        "seed": 7,
        "min_trades": 1,
        "lookback": "30d",
        "refresh": {"exchange": "binance", "symbol": "BTC/USDT", **refresh},
    }


def _schedule(client, name: str, template: dict) -> tuple[str, datetime]:
    created = client.post(SCHEDULES, json={"name": name, "cron": "0 * * * *", "template": template})
    assert created.status_code == 201, created.text
    assert created.json()["template"]["refresh"] == template["refresh"]
    return created.json()["id"], datetime.fromisoformat(created.json()["next_fire_at"])


def test_a_schedule_with_refresh_trains_on_the_bars_fetched_just_before(client, db, clean, workers, exchange):
    workers("w1", env_overrides=exchange_env(exchange))
    schedule_id, tick = _schedule(client, "hourly-refresh", _template())
    assert schedules_service.fire_due(db, clean, tick) != []  # the clock at the next tick
    db.commit()
    [fire] = _fires(db, schedule_id)
    assert fire.outcome == FireOutcome.REFRESHING and fire.job_id is None and fire.refresh_job_id is not None

    refresh = finished(db, fire.refresh_job_id)
    assert refresh.status == JobStatus.SUCCEEDED, (refresh.error_type, refresh.error_message)
    fire = wait_until(lambda: (f := _fires(db, schedule_id)[0]).job_id and f, what="the training job")
    assert fire.outcome == FireOutcome.STARTED and str(fire.refresh_job_id) in fire.message
    training = finished(db, fire.job_id)
    assert training.status == JobStatus.SUCCEEDED, (training.error_type, training.error_message)

    # What the exchange served, independently of what was stored: every bar from the lookback's
    # start to the last closed one (the tick is ahead of the clock: the open bar is left out).
    since_ms = int((tick - timedelta(days=30)).timestamp() * 1000)
    served = sorted({t for entry in exchange.state.klines() for t in entry.bars})
    last_ms = closed_before(int(tick.timestamp() * 1000))
    fetched = [t for t in served if since_ms <= t <= last_ms]
    assert fetched == list(range(since_ms, last_ms + HOUR, HOUR))
    assert stored_ms(db) == fetched and refresh.iteration == len(fetched)

    params = training.params
    assert params["end"] == iso(last_ms + HOUR) and params["start"] == iso(since_ms)  # end: just after the last bar
    configuration = db.scalar(select(TrainedConfiguration).where(TrainedConfiguration.job_id == training.id))
    assert int(configuration.data_end.timestamp() * 1000) == last_ms
    in_range = db.scalar(
        select(func.count())
        .select_from(Candle)
        .where(
            Candle.symbol == "BTCUSDT",
            Candle.open_time >= datetime.fromisoformat(params["start"]),
            Candle.open_time < datetime.fromisoformat(params["end"]),
        )
    )
    assert in_range == len(fetched)
    detail = client.get(f"{SCHEDULES}/{schedule_id}").json()
    [shown] = detail["recent_fires"]
    assert (shown["outcome"], shown["job_status"], shown["refresh_job_status"]) == ("started", "succeeded", "succeeded")


@pytest.mark.parametrize("failure", ["unknown_symbol", "exchange_down"])
def test_a_failing_refresh_fails_the_fire_and_nothing_is_trained(client, db, clean, workers, exchange, failure):
    refresh = {"symbol": "DOGE/EUR"} if failure == "unknown_symbol" else {}
    if failure == "exchange_down":
        exchange.state.faults.extend([("5xx", 502)] * 1000)
    workers("w1", env_overrides=exchange_env(exchange))
    schedule_id, tick = _schedule(client, f"failing-{failure}", _template(**refresh))
    schedules_service.fire_due(db, clean, tick)
    db.commit()
    [fire] = _fires(db, schedule_id)
    job = finished(db, fire.refresh_job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_type == ("UnknownSymbol" if failure == "unknown_symbol" else "ExchangeUnavailable")
    # The workers' maintenance pass settles the fire.
    fire = wait_until(
        lambda: (f := _fires(db, schedule_id)[0]).outcome == FireOutcome.REFRESH_FAILED and f, what="the fire to fail"
    )
    assert fire.job_id is None and job.error_type in fire.message and "nothing was trained" in fire.message
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Job).where(Job.kind == "training")) == 0
    shown = client.get(f"{SCHEDULES}/{schedule_id}").json()["recent_fires"][0]
    assert (shown["outcome"], shown["job_id"], shown["refresh_job_status"]) == ("refresh_failed", None, "failed")


def test_the_training_job_survives_a_crash_between_the_refresh_commit_and_its_send(client, db, clean, redis):
    """No worker: the refresh's success transaction is run by hand, and the process "dies" after
    its commit, before the training job's dispatch is sent. The row is queued in PostgreSQL; the
    reconciler sends it. A crash before the commit leaves neither: the refresh runs again."""
    rows = [(FIRST_MS + i * HOUR, 1.0, 2.0, 0.5, 1.5, 1.0) for i in range(900)]
    candles_repo.insert(db, "BTCUSDT", "1h", rows, source="binance")
    db.commit()
    template = {**_template(), "lookback": "30d"}
    schedule_id, tick = _schedule(client, "crash", template)
    schedules_service.fire_due(db, clean, tick)
    db.commit()
    dispatch.discard(db)
    [fire] = _fires(db, schedule_id)

    def refresh_succeeds(session, *, commit: bool) -> None:
        claim = lifecycle.claim(session, fire.refresh_job_id, "by-hand", 1)
        schedules_service.train_after_refresh(session, clean, claim.job.id, claim.job.params["schedule"])
        lifecycle.succeed(session, claim)
        if commit:
            session.commit()
        else:
            session.rollback()
        dispatch.discard(session)  # the process is gone: nothing is sent

    refresh_succeeds(db, commit=False)
    assert _fires(db, schedule_id)[0].outcome == FireOutcome.REFRESHING
    assert job_row(db, fire.refresh_job_id).status == JobStatus.QUEUED

    refresh_succeeds(db, commit=True)
    fire = _fires(db, schedule_id)[0]
    training = job_row(db, fire.job_id)
    assert fire.outcome == FireOutcome.STARTED and training.status == JobStatus.QUEUED
    assert training.params["end"] == iso(FIRST_MS + 900 * HOUR)  # just after the last stored bar
    assert not queue.is_present(redis, training.rq_job_id, training.priority)
    wait_until(lambda: utcnow() - training.created_at > timedelta(seconds=clean.reconcile_grace_s + 0.5), what="grace")
    maintenance.run_once(clean, redis)
    db.expire_all()
    training = job_row(db, fire.job_id)
    assert queue.is_present(redis, training.rq_job_id, training.priority)


def test_sigterm_checkpoints_a_refresh_that_resumes_after_the_last_stored_bar(client, db, clean, workers, exchange):
    exchange.state.faults.extend([None, ("429", 3), ("429", 3)])  # a page, then waits the stop interrupts
    first = workers("w1", env_overrides=exchange_env(exchange, FETCH_RETRY_BUDGET_S="30"))
    body = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "since": iso(FIRST_MS)}
    job_id = client.post(REFRESH, json=body).json()["job_id"]
    wait_until(lambda: len(exchange.state.klines()) >= 2, timeout=60, what="the refresh to wait out a 429")
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    job = job_row(db, job_id)
    assert job.status == JobStatus.QUEUED and "checkpointed" in job.message
    kept = stored_ms(db)
    assert kept == [FIRST_MS + i * HOUR for i in range(100)]  # the page fetched before the stop
    served_before = len(exchange.state.klines())
    workers("w2", env_overrides=exchange_env(exchange, FETCH_RETRY_BUDGET_S="30"))
    job = finished(db, job_id)
    assert job.status == JobStatus.SUCCEEDED, (job.error_type, job.error_message)
    statuses = [a["status"] for a in client.get(f"/api/v2/training/jobs/{job_id}").json()["attempt_history"]]
    assert statuses == ["preempted", "succeeded"]
    resumed = [int(k.query["startTime"]) for k in exchange.state.klines()[served_before:] if k.status == 200]
    assert resumed[0] == kept[-1] + HOUR  # resumed after the last stored bar
    bars = stored_ms(db)
    assert bars == [FIRST_MS + i * HOUR for i in range(len(bars))] and bars[-1] >= closed_before(NOW_MS + HOUR) - HOUR


def test_a_running_refresh_counts_as_the_schedules_job_and_canceling_it_fails_the_fire(client, db, clean, redis):
    """No worker: the refresh stays queued. The next tick meets `overlap_policy: skip`; a cancel
    of the refresh makes the fire `refresh_failed` at the next maintenance pass, nothing trained."""
    candles_repo.insert(
        db, "BTCUSDT", "1h", [(FIRST_MS + i * HOUR, 1.0, 2.0, 0.5, 1.5, 1.0) for i in range(300)], "binance"
    )
    db.commit()
    schedule_id, tick = _schedule(client, "overlap", _template())
    schedules_service.fire_due(db, clean, tick)
    db.commit()
    schedules_service.fire_due(db, clean, tick + timedelta(hours=1))
    db.commit()
    first, second = sorted(_fires(db, schedule_id), key=lambda f: f.fire_time)
    assert (first.outcome, second.outcome) == (FireOutcome.REFRESHING, FireOutcome.SKIPPED_OVERLAP)

    assert client.delete(f"/api/v2/training/jobs/{first.refresh_job_id}").json()["status"] == "canceled"
    maintenance.run_once(clean, redis, now=tick + timedelta(hours=1, minutes=1))
    first = next(f for f in _fires(db, schedule_id) if f.id == first.id)
    assert first.outcome == FireOutcome.REFRESH_FAILED and first.job_id is None
    assert f"candles refresh job {first.refresh_job_id} canceled" in first.message
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Job).where(Job.kind == "training")) == 0
