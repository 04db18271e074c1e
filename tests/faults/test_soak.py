"""A soak: 50 jobs submitted while faults are injected at random (kill -9 and SIGTERM of
workers, FLUSHALL of Redis, cancels). Every job must end in exactly one terminal state;
succeeded jobs have exactly one configuration, canceled ones none; nothing is left queued or
running. Prints what happened; seeded, so a failure can be replayed."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from redis import Redis
from sqlalchemy import func, select

from app.models import Job, TrainedConfiguration
from app.services import candles as candles_service
from app.status import JobStatus
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.soak]

N_JOBS, N_WORKERS, SEED = 50, 3, 20261122


def test_soak_with_random_faults(client, db, workers, clean):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 20_000, seed=4)
    db.commit()
    rng = random.Random(SEED)
    pool = {f"s{i}": workers(f"s{i}") for i in range(N_WORKERS)}
    generation = Counter()
    faults: Counter[str] = Counter()
    job_ids: list[str] = []

    def replace(name: str) -> None:
        generation[name] += 1
        pool[name] = workers(f"{name}-{generation[name]}")

    started = time.monotonic()
    for i in range(N_JOBS):
        body = {
            "strategy": rng.choice(["sma_crossover", "bollinger_breakout", "rsi_reversion"]),
            "symbol": "BTCUSDT",
            "timeframe": rng.choice(["1m", "5m"]),
            "n_iterations": rng.randint(10, 60),
            "seed": i,
            "priority": rng.choice(["high", "normal", "low"]),
        }
        resp = client.post("/api/v2/training/start", json=body)
        assert resp.status_code == 202, resp.text
        job_ids.append(resp.json()["job_id"])
        if i % 3 == 2:
            fault = rng.choice(["kill9", "sigterm", "flushall", "cancel", "none"])
            faults[fault] += 1
            name = rng.choice(sorted(pool))
            if fault == "kill9":
                pool[name].kill_all()
                replace(name)
            elif fault == "sigterm":
                pool[name].signal(signal.SIGTERM)
                replace(name)
            elif fault == "flushall":
                Redis.from_url(clean.redis_url).flushall()
            elif fault == "cancel":
                client.delete(f"/api/v2/training/jobs/{rng.choice(job_ids)}")
            time.sleep(rng.uniform(0.05, 0.4))

    def all_terminal():
        db.expire_all()
        open_jobs = db.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        )
        return open_jobs == 0

    wait_until(all_terminal, timeout=300, interval=0.5, what="every soak job to finish")
    elapsed = time.monotonic() - started
    db.expire_all()
    rows = db.scalars(select(Job).where(Job.id.in_(job_ids))).all()
    assert len(rows) == N_JOBS
    configs = Counter(db.scalars(select(TrainedConfiguration.job_id)).all())
    statuses = Counter(r.status for r in rows)
    for row in rows:
        assert row.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)
        expected = 1 if row.status == JobStatus.SUCCEEDED else 0
        assert configs.get(row.id, 0) == expected, (row.id, row.status, configs.get(row.id))
    assert sum(configs.values()) == statuses[JobStatus.SUCCEEDED], "no configuration without its job"
    attempts = sum(r.attempts for r in rows)
    print(
        f"\nsoak: {N_JOBS} jobs in {elapsed:.0f}s, faults {dict(faults)}, outcomes {dict(statuses)}, "
        f"{attempts} attempts in all; lost 0, duplicated 0"
    )
