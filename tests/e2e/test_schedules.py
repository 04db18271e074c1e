"""End to end: a schedule with a seconds-level cron expression, fired by a real worker's
maintenance pass, starts jobs that run and succeed; once paused it starts no more."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from app.clock import utcnow
from app.models import Job, ScheduleFire
from app.services import candles as candles_service
from app.services import schedules as schedules_service
from app.status import JobStatus
from tests.support import wait_until

URL = "/api/v2/training/schedules"


def test_seconds_level_schedule_fires_jobs_that_succeed_then_pause_stops_it(client, db, redis, clean, workers):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 20_000, seed=3)
    db.commit()
    workers("w1")
    template = {
        "strategy": "sma_crossover",
        "symbol": "BTCUSDT",
        "timeframe": "5m",
        "n_iterations": 3,
        "seed": 7,
        "min_trades": 1,
    }
    created = client.post(URL, json={"name": "every-3s", "cron": "* * * * * */3", "template": template})
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]

    def outcomes() -> list[tuple[datetime, str, str | None]]:
        db.expire_all()
        rows = db.execute(
            select(ScheduleFire.fire_time, ScheduleFire.outcome, Job.status, Job.error_message)
            .outerjoin(Job, Job.id == ScheduleFire.job_id)
            .where(ScheduleFire.schedule_id == uuid.UUID(schedule_id))
            .order_by(ScheduleFire.fire_time)
        ).all()
        assert JobStatus.FAILED not in [row[2] for row in rows], rows
        return [tuple(row)[:3] for row in rows]

    fires = wait_until(
        lambda: (rows := outcomes()) and [r for r in rows if r[2] == JobStatus.SUCCEEDED][1:] and rows,
        timeout=240,
        interval=0.5,
        what="two scheduled jobs to succeed",
    )
    assert all(fire_time.second % 3 == 0 for fire_time, _, _ in fires), "every fire time is a tick"
    assert {outcome for _, outcome, _ in fires} <= {"started", "skipped_overlap"}
    detail = client.get(f"{URL}/{schedule_id}").json()
    assert JobStatus.SUCCEEDED in [f["job_status"] for f in detail["recent_fires"]]

    paused = client.post(f"{URL}/{schedule_id}/pause").json()
    assert paused["paused"] is True and paused["next_fire_at"] is None
    count = len(outcomes())
    # Firing a minute ahead (twenty ticks later) starts nothing, and neither do the worker's passes.
    assert schedules_service.fire_due(db, clean, utcnow() + timedelta(minutes=1)) == []
    db.rollback()
    paused_at = utcnow()
    wait_until(lambda: utcnow() - paused_at > timedelta(seconds=7), timeout=30, what="several ticks to pass")
    assert len(outcomes()) == count
