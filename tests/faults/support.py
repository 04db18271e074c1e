"""Helpers for fault injection: long-enough training jobs and reading their state."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import Attempt, Job, TrainedConfiguration, Trial

BODY = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1m", "seed": 5}


def start(client, n_iterations: int = 300, **extra) -> str:
    resp = client.post("/api/v2/training/start", json={**BODY, "n_iterations": n_iterations, **extra})
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def job(db, job_id) -> Job:
    db.expire_all()
    return db.get(Job, job_id)


def attempts(db, job_id) -> list[Attempt]:
    db.expire_all()
    return list(db.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)))


def trial_numbers(db, job_id) -> list[int]:
    return list(db.scalars(select(Trial.number).where(Trial.job_id == job_id).order_by(Trial.number)))


def config_count(db, job_id) -> int:
    return db.scalar(
        select(func.count()).select_from(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)
    )
