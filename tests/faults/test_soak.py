"""A soak: 50 jobs submitted while faults are injected at random (kill -9 and SIGTERM of
workers, FLUSHALL of Redis, cancels) and at fixed points: a PostgreSQL outage of "45 s"
(scaled by the test outage budget), Redis refusing writes for 20 s while submissions go on, a
SIGTERM during a Redis outage, and a memory-hungry job. Every job must end in exactly one
terminal state; succeeded jobs have exactly one configuration, canceled ones none; nothing is
left queued or running; no attempt is lost beyond the kill -9s, and none fails on PostgreSQL
errors (the outage is within the budget). Prints what happened; seeded, so a failure can be
replayed."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import pytest
from redis import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select

from app.models import Attempt, Job, TrainedConfiguration
from app.services import candles as candles_service
from app.status import AttemptStatus, JobStatus
from tests.faults.test_outages import scaled
from tests.support import submit_smoke, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.soak]

N_JOBS, N_WORKERS, SEED = 50, 3, 20261122


MEMORY_LIMIT = {"JOB_MEMORY_LIMIT_MB": "400"}


def refuse_writes(redis: Redis, refuse: bool) -> None:
    """A master that demands a replica it does not have answers every write with NOREPLICAS."""
    redis.config_set("min-replicas-to-write", 1 if refuse else 0)


def test_soak_with_random_faults(client, db, workers, clean, postgres, redis_server):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 20_000, seed=4)
    db.commit()
    rng = random.Random(SEED)
    pool = {f"s{i}": workers(f"s{i}", env_overrides=MEMORY_LIMIT) for i in range(N_WORKERS)}
    generation = Counter()
    faults: Counter[str] = Counter()
    job_ids: list[str] = []
    admin = Redis.from_url(clean.redis_url)

    def replace(name: str) -> None:
        generation[name] += 1
        pool[name] = workers(f"{name}-{generation[name]}", env_overrides=MEMORY_LIMIT)

    def fixed_fault(i: int) -> None:
        if i == 8:  # a memory-hungry job among the others: it fails alone
            faults["memory_hungry"] += 1
            hungry.append(str(submit_smoke(db, clean, memory_mb=2000).id))
        elif i == 15:  # PostgreSQL away for "45 s": submissions pause (the API answers 503)
            faults["postgres_45s"] += 1
            db.close()
            postgres.stop()
            time.sleep(scaled(45))  # the injected outage's length
            postgres.start()
        elif i == 25:  # Redis refuses writes for 20 s while submissions go on
            faults["redis_refuses_writes_20s"] += 1
            refuse_writes(admin, True)
            threading.Timer(20, refuse_writes, (admin, False)).start()
        elif i == 40:  # SIGTERM while Redis is down
            faults["sigterm_in_redis_outage"] += 1
            redis_server.stop()
            name = sorted(pool)[0]
            pool[name].signal(signal.SIGTERM)
            time.sleep(3)  # the outage's length
            redis_server.start()
            replace(name)

    hungry: list[str] = []

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
        fixed_fault(i)
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
                try:
                    Redis.from_url(clean.redis_url).flushall()
                except ResponseError:  # refused while Redis refuses writes: that fault stands in
                    faults["flushall_refused"] += 1
            elif fault == "cancel":
                client.delete(f"/api/v2/training/jobs/{rng.choice(job_ids)}")
            time.sleep(rng.uniform(0.05, 0.4))

    def all_terminal():
        db.expire_all()
        open_jobs = db.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        )
        return open_jobs == 0

    wait_until(all_terminal, timeout=480, interval=0.5, what="every soak job to finish")
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
    (memory_job,) = (db.get(Job, h) for h in hungry)
    assert memory_job.status == JobStatus.FAILED and memory_job.error_type == "MemoryError", memory_job.error_type
    history = db.scalars(select(Attempt)).all()
    lost = [a for a in history if a.status == AttemptStatus.LOST]
    # A kill -9 of a busy worker loses its attempt (the reaper's job). Every SIGTERM, the one
    # during a Redis outage included, checkpoints instead: it never costs an attempt.
    assert len(lost) <= faults["kill9"], [(a.job_id, a.error_message) for a in lost]
    assert not [a for a in history if a.error_type == "OperationalError"], "the outage was within the budget"
    print(
        f"\nsoak: {N_JOBS} jobs in {elapsed:.0f}s, faults {dict(faults)}, outcomes {dict(statuses)}, "
        f"{attempts} attempts in all, {len(lost)} lost to kill -9; lost jobs 0, duplicated 0"
    )
