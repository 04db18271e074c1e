"""Schedules fired by the maintenance pass, with the pass's clock in the test's hands, against
the real PostgreSQL and Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.models import Job, ScheduleFire
from app.services import candles as candles_service
from app.services import jobs as jobs_service
from app.services import maintenance
from app.services import schedules as schedules_service
from app.status import JobStatus

TEMPLATE = {
    "strategy": "sma_crossover",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "n_iterations": 5,
    "priority": "normal",
    "seed": 1,
    "objective": "sharpe",
    "holdout_fraction": 0.2,
    "folds": 0,
}


@pytest.fixture(autouse=True)
def candles(db) -> None:
    """Hourly bars from 2026-01-01 into 2027: every window these tests fire on has data."""
    candles_service.generate_synthetic(
        db, "BTCUSDT", "1h", 9000, seed=1, start_ms=int(at("2026-01-01").timestamp() * 1000)
    )
    db.commit()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_schedule(db, now: datetime, **overrides):
    fields = dict(
        name="nightly",
        cron="0 * * * *",
        timezone="UTC",
        template=TEMPLATE,
        lookback=None,
        misfire_policy="run_once",
        overlap_policy="queue",
        paused=False,
    )
    fields.update(overrides)
    schedule = schedules_service.create(db, now=now, **fields)
    db.commit()
    return schedule


def jobs(db) -> list[Job]:
    db.expire_all()
    return list(db.scalars(select(Job).order_by(Job.created_at)))


def fires(db, schedule_id) -> list[ScheduleFire]:
    db.expire_all()
    return list(db.scalars(select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id).order_by("fire_time")))


def test_fires_once_per_tick_with_an_absolute_window(db, redis, clean):
    schedule = make_schedule(db, at("2026-05-01T10:00:30"), lookback="90d")
    assert schedule.next_fire_at == at("2026-05-01T11:00:00")
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T10:59:59")).fired == []
    report = maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:03"))
    assert len(report.fired) == 1 and report.redispatched == []
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:40")).fired == []
    [job] = jobs(db)
    assert str(job.id) == report.fired[0] and job.status == JobStatus.QUEUED and job.kind == "training"
    assert job.params["start"] == "2026-01-31T11:00:00Z" and job.params["end"] == "2026-05-01T11:00:00Z"
    assert job.params["strategy"] == "sma_crossover" and "priority" not in job.params
    assert job.idempotency_key == schedules_service.idempotency_key(schedule.id, at("2026-05-01T11:00:00"))
    assert redis.llen("rq:queue:training") == 1, "sent to Redis after commit"
    assert len(maintenance.run_once(clean, redis, now=at("2026-05-01T12:00:01")).fired) == 1
    assert [f.fire_time for f in fires(db, schedule.id)] == [at("2026-05-01T11:00"), at("2026-05-01T12:00")]
    db.refresh(schedule)
    assert schedule.last_fired_at == at("2026-05-01T12:00") and schedule.next_fire_at == at("2026-05-01T13:00")


def test_a_tick_cannot_fire_twice_even_after_a_clock_jump(db, redis, clean):
    schedule = make_schedule(db, at("2026-05-01T10:00:30"))
    assert len(maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:01")).fired) == 1
    # The clock jumps back: the schedule looks due for the same tick again.
    schedule.next_fire_at = at("2026-05-01T11:00:00")
    db.commit()
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:02")).fired == []
    assert len(jobs(db)) == 1
    db.add(ScheduleFire(schedule_id=schedule.id, fire_time=at("2026-05-01T11:00:00"), outcome="started"))
    with pytest.raises(IntegrityError):
        db.flush()
    db.rollback()


def test_two_passes_racing_on_the_same_tick_create_one_job(db, redis, clean):
    make_schedule(db, at("2026-05-01T10:00:30"))
    now = at("2026-05-01T11:00:01")
    barrier = threading.Barrier(4)
    reports: list[maintenance.PassReport] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            reports.append(maintenance.run_once(clean, redis, now=now))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(len(r.fired) for r in reports) == 1
    assert len(jobs(db)) == 1
    assert db.scalar(select(func.count()).select_from(ScheduleFire)) == 1


@pytest.mark.parametrize(("policy", "expected"), [("run_once", 1), ("skip", 0)])
def test_after_a_three_hour_outage(db, redis, clean, policy, expected):
    schedule = make_schedule(db, at("2026-05-01T06:30:00"), misfire_policy=policy)
    assert len(maintenance.run_once(clean, redis, now=at("2026-05-01T07:00:02")).fired) == 1
    # Down from 07:00:02 to 10:30: the 08:00, 09:00 and 10:00 ticks were missed.
    report = maintenance.run_once(clean, redis, now=at("2026-05-01T10:30:00"))
    assert len(report.fired) == expected
    assert len(jobs(db)) == 1 + expected
    times = [f.fire_time for f in fires(db, schedule.id)]
    assert times == [at("2026-05-01T07:00"), at("2026-05-01T10:00")][: 1 + expected]
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T10:45:00")).fired == []
    assert len(maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:01")).fired) == 1


def test_overlap_skip_waits_for_the_previous_job_and_queue_does_not(db, redis, clean):
    skipping = make_schedule(db, at("2026-05-01T10:00:30"), name="skipping", overlap_policy="skip")
    queueing = make_schedule(db, at("2026-05-01T10:00:30"), name="queueing", overlap_policy="queue")
    for hour in (11, 12):
        maintenance.run_once(clean, redis, now=at(f"2026-05-01T{hour}:00:01"))
    assert [f.outcome for f in fires(db, skipping.id)] == ["started", "skipped_overlap"]
    assert [f.outcome for f in fires(db, queueing.id)] == ["started", "started"]
    first = fires(db, skipping.id)[0].job_id
    jobs_service.cancel(db, first)
    db.commit()
    maintenance.run_once(clean, redis, now=at("2026-05-01T13:00:01"))
    assert [f.outcome for f in fires(db, skipping.id)] == ["started", "skipped_overlap", "started"]
    assert len(jobs(db)) == 2 + 3


def test_paused_schedules_do_not_fire_and_resume_from_now(db, redis, clean):
    schedule = make_schedule(db, at("2026-05-01T10:00:30"))
    schedules_service.pause(db, schedule.id)
    db.commit()
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T13:00:01")).fired == []
    schedules_service.resume(db, schedule.id, now=at("2026-05-01T13:30:00"))
    db.commit()
    assert schedule.next_fire_at == at("2026-05-01T14:00:00"), "ticks passed while paused are no misfire"
    assert jobs(db) == []


def fire_times_over(db, redis, clean, schedule, until: datetime) -> list[datetime]:
    """Run a pass a second after each tick, as an always-up service would."""
    while True:
        db.refresh(schedule)
        if schedule.next_fire_at >= until:
            break
        maintenance.run_once(clean, redis, now=schedule.next_fire_at + timedelta(seconds=1))
    return [f.fire_time for f in fires(db, schedule.id)]


def test_dst_spring_forward_in_london(db, redis, clean):
    # 2026-03-29: 01:00 GMT becomes 02:00 BST; local 01:00-01:59 does not exist.
    nine = make_schedule(db, at("2026-03-27T12:00"), name="nine", cron="0 9 * * *", timezone="Europe/London")
    half_one = make_schedule(db, at("2026-03-27T12:00"), name="half-one", cron="30 1 * * *", timezone="Europe/London")
    assert fire_times_over(db, redis, clean, nine, at("2026-03-31T00:00")) == [
        at("2026-03-28T09:00"),  # 09:00 GMT
        at("2026-03-29T08:00"),  # 09:00 BST
        at("2026-03-30T08:00"),
    ]
    assert fire_times_over(db, redis, clean, half_one, at("2026-03-31T00:00")) == [
        at("2026-03-28T01:30"),  # 01:30 GMT
        at("2026-03-29T01:00"),  # 01:30 does not exist: runs at the change, 02:00 BST
        at("2026-03-30T00:30"),  # 01:30 BST
    ]


def test_dst_fall_back_in_london(db, redis, clean):
    # 2026-10-25: 02:00 BST becomes 01:00 GMT; local 01:00-01:59 happens twice.
    nine = make_schedule(db, at("2026-10-23T12:00"), name="nine", cron="0 9 * * *", timezone="Europe/London")
    half_one = make_schedule(db, at("2026-10-23T12:00"), name="half-one", cron="30 1 * * *", timezone="Europe/London")
    assert fire_times_over(db, redis, clean, nine, at("2026-10-27T00:00")) == [
        at("2026-10-24T08:00"),  # 09:00 BST
        at("2026-10-25T09:00"),  # 09:00 GMT
        at("2026-10-26T09:00"),
    ]
    assert fire_times_over(db, redis, clean, half_one, at("2026-10-27T00:00")) == [
        at("2026-10-24T00:30"),  # 01:30 BST
        at("2026-10-25T00:30"),  # the first 01:30 only, as cron does
        at("2026-10-26T01:30"),  # 01:30 GMT
    ]
    # Finer than hourly keeps real time through the repeated hour: every 30 minutes.
    half_hourly = make_schedule(
        db, at("2026-10-24T23:00"), name="half-hourly", cron="*/30 * * * *", timezone="Europe/London"
    )
    expected = [at("2026-10-24T23:30") + timedelta(minutes=30 * i) for i in range(8)]
    assert fire_times_over(db, redis, clean, half_hourly, at("2026-10-25T03:30")) == expected


def test_a_tick_the_start_path_refuses_is_recorded_and_the_next_one_tries_again(db, redis, clean):
    schedule = make_schedule(db, at("2026-05-01T10:00:30"), template={**TEMPLATE, "symbol": "ETHUSDT"})
    assert maintenance.run_once(clean, redis, now=at("2026-05-01T11:00:01")).fired == []
    [fire] = fires(db, schedule.id)
    assert fire.outcome == "refused" and fire.job_id is None and "no candles stored for ETHUSDT" in fire.message
    assert jobs(db) == []
    db.refresh(schedule)
    assert schedule.next_fire_at == at("2026-05-01T12:00:00")


def test_a_seconds_level_cron_fires_at_most_once_per_pass_and_once_per_tick(db, redis, clean):
    """`*/3` seconds against passes 5 s apart, then 1 s apart, then one pass 10 s late: every pass
    fires at most the latest tick at or before it, no tick twice, and nothing ever catches up."""
    schedule = make_schedule(db, at("2026-05-01T10:00:00.5"), cron="* * * * * */3")
    assert schedule.next_fire_at == at("2026-05-01T10:00:03")

    def pass_at(now: datetime) -> int:
        return len(maintenance.run_once(clean, redis, now=now).fired)

    # Slower than the ticks: one fire per pass, the latest tick; the ticks in between leave no row.
    slow = [at("2026-05-01T10:00:05.5") + timedelta(seconds=5 * i) for i in range(12)]
    assert [pass_at(now) for now in slow] == [1] * 12
    latest = [now.replace(microsecond=0, second=now.second - now.second % 3) for now in slow]
    assert [f.fire_time for f in fires(db, schedule.id)] == latest
    # Faster than the ticks: each tick once, the passes in between fire nothing.
    fast = [at("2026-05-01T10:01:01.5") + timedelta(seconds=i) for i in range(12)]
    assert [pass_at(now) for now in fast] == [0, 0, 1] * 4
    # A pass 10 s late (three ticks went by) fires one job, for the latest of them.
    assert pass_at(at("2026-05-01T10:01:22.5")) == 1
    times = [f.fire_time for f in fires(db, schedule.id)]
    assert times[len(latest) :] == [at(f"2026-05-01T10:01:{s:02d}") for s in (3, 6, 9, 12, 21)]
    assert len(set(times)) == len(times) == len(jobs(db)) == 17


def test_a_fired_job_carries_its_templates_costs_or_the_settings_defaults(db, redis, clean):
    make_schedule(db, at("2026-05-01T10:00:30"), lookback="90d", template={**TEMPLATE, "fee_bps": 0.0})
    make_schedule(db, at("2026-05-01T10:00:30"), name="defaults", lookback="30d")
    settings = clean.model_copy(update={"default_fee_bps": 7.0, "default_slippage_bps": 1.5})
    assert len(maintenance.run_once(settings, redis, now=at("2026-05-01T11:00:03")).fired) == 2
    costs = sorted((job.params["fee_bps"], job.params["slippage_bps"]) for job in jobs(db))
    assert costs == [(0.0, 1.5), (7.0, 1.5)]
