"""A training job whose strategy is biased fails with LookaheadBias or WarmupTooShort, is not
retried and saves no configuration; an unbiased one saves the checks it passed.

The biased strategies are registered in this process and the job runs in a process forked from
it, as a worker forks a job, through the real runner against the real PostgreSQL: a worker
started as its own program could not see a strategy registered here."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from app.engine import indicators as ind
from app.engine.candles import Candles
from app.engine.registry import get_strategy
from app.engine.registry import strategies as installed
from app.engine.strategy import IntParam, Strategy, vectorised
from app.execution import process
from app.execution.runner import run_job
from app.models import Attempt, Job, TrainedConfiguration, Trial
from app.queue import AttemptInterrupted, redis_connection
from app.services import dispatch
from app.services import jobs as jobs_service
from tests.support import load_demo


def _sign(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.nan_to_num(ind.sign(x, ref)).astype(np.int8)


def _tomorrows_crossover(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """sma_crossover with the next bar's close in the fast mean: it trades, and looks good."""
    fast = ind.Rolling(np.r_[c.close[1:], c.close[-1]]).mean(p["fast"])
    slow = ind.Rolling(c.close).mean(p["slow"])
    return _sign(fast - slow, slow)


def _ema(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """Price against an EMA seeded with the first close (recursive), declaring one bar."""
    alpha, level = 2.0 / (p["span"] + 1), c.close[0]
    ema = np.empty(len(c))
    for i, x in enumerate(c.close):
        level = alpha * x + (1 - alpha) * level
        ema[i] = level
    return _sign(c.close - ema, ema)


CROSSOVER = get_strategy("sma_crossover")
BIASED = {
    "tomorrows_crossover": Strategy(
        "tomorrows_crossover", CROSSOVER.space, _tomorrows_crossover, CROSSOVER.warmup, CROSSOVER.constraint
    ),
    "ema_one_bar": Strategy("ema_one_bar", (IntParam("span", 5, 60),), _ema, lambda p: 1),
}


def _child(settings, job_id: str, parent: int) -> None:
    process.enter_job_process("bias-test", parent, settings.database_url)
    run_job(settings, job_id, "bias-test", parent)


def run_in_fork(settings, job_id) -> None:
    """Run the job as a worker's forked job process would, and wait for it."""
    child = multiprocessing.get_context("fork").Process(target=_child, args=(settings, str(job_id), os.getpid()))
    child.start()
    child.join(180)
    assert child.exitcode == 0, child.exitcode


def submit(db, settings, strategy: str):
    params = {"strategy": strategy, "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 8, "seed": 3}
    started = jobs_service.start(
        db, settings, kind="training", priority="normal", params={**params, "min_trades": 3}, idempotency_key=None
    )
    dispatch.commit_and_send(db, redis_connection(settings.redis_url), settings)
    return started.job.id


@pytest.mark.parametrize(
    ("strategy", "error_type", "words"),
    [
        ("tomorrows_crossover", "LookaheadBias", "changed when only the bars after"),
        ("ema_one_bar", "WarmupTooShort", "declare a warm-up of at least"),
    ],
)
def test_a_biased_job_fails_without_retry_and_saves_nothing(db, settings, monkeypatch, strategy, error_type, words):
    for name, biased in BIASED.items():
        monkeypatch.setitem(installed(), name, biased)
    load_demo(db, bars=8_000)
    job_id = submit(db, settings, strategy)
    run_in_fork(settings, job_id)

    db.expire_all()
    job = db.get(Job, job_id)
    assert (job.status, job.error_type) == ("failed", error_type), (job.status, job.error_type, job.error_message)
    assert strategy in job.error_message and words in job.error_message
    assert "parameters {" in job.error_message
    attempts = db.scalars(select(Attempt).where(Attempt.job_id == job_id)).all()
    assert [(a.status, a.error_type) for a in attempts] == [("failed", error_type)]  # one attempt: no retry
    # It optimised (every trial is kept), then the check refused the result: nothing saved.
    assert len(db.scalars(select(Trial).where(Trial.job_id == job_id)).all()) == 8
    assert db.scalars(select(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)).all() == []


def test_an_unbiased_job_saves_the_checks_it_passed(db, settings):
    load_demo(db, bars=8_000)
    job_id = submit(db, settings, "sma_crossover")
    run_in_fork(settings, job_id)
    db.expire_all()
    assert db.get(Job, job_id).status == "succeeded"
    config = db.scalars(select(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)).one()
    checks = config.details["bias_checks"]
    assert checks["passed"] is True and checks["params_checked"] == 1
    assert checks["warmup"]["declared"] == CROSSOVER.warmup(config.params)
    assert 1 <= len(checks["lookahead"]["bars_tried"]) == len(checks["lookahead"]["times_tried"])


def _interrupted(candles: Candles, params: dict[str, Any]) -> np.ndarray:
    raise AttemptInterrupted("the attempt's hard timeout")  # as RQ's timeout signal raises it mid-computation


def test_a_timeout_inside_a_packages_code_is_the_attempts_interruption_not_a_strategy_error(db, settings, monkeypatch):
    """The package wrapper names a package's own errors StrategyError (never retried); the
    hard timeout or stall arriving while its code runs stays an interruption, which is retried."""
    slow = vectorised(name="slow_package", space=(IntParam("span", 5, 60),), warmup=lambda p: 1)(_interrupted)
    monkeypatch.setitem(installed(), "slow_package", slow)
    load_demo(db, bars=8_000)
    job_id = submit(db, settings, "slow_package")
    run_in_fork(settings, job_id)

    db.expire_all()
    attempts = db.scalars(select(Attempt).where(Attempt.job_id == job_id)).all()
    assert [a.error_type for a in attempts] != ["StrategyError"], [(a.status, a.error_type) for a in attempts]
    assert attempts and attempts[0].status == "failed" and attempts[0].error_type != "StrategyError"
    assert db.get(Job, job_id).status in {"queued", "failed"}  # retried with backoff, or out of attempts
