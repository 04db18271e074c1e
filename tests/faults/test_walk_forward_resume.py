"""kill -9 in the middle of a walk-forward job: the next attempt replays the stored trials of
finished windows (and of the window in flight) and continues; none is run twice."""

from __future__ import annotations

import pytest

from app.models import Trial
from tests.faults.support import attempts, config_count, job, start, trial_numbers
from tests.support import wait_until

pytestmark = pytest.mark.faults


def test_kill_9_mid_walk_forward_resumes_without_redoing_trials(client, db, long_data, workers):
    w1 = workers("w1")
    job_id = start(client, n_iterations=100, validation={"mode": "walk_forward", "windows": 3}, min_trades=10)
    wait_until(
        lambda: (j := job(db, job_id)).status == "running" and (j.iteration or 0) >= 130 and j,
        timeout=120,
        what="job into its second window",
    )
    w1.kill_all()
    kept = len(trial_numbers(db, job_id))
    workers("w2")
    final = wait_until(
        lambda: (j := job(db, job_id)).status in ("succeeded", "failed", "canceled") and j,
        timeout=240,
        interval=0.2,
        what="job to finish",
    )
    assert final.status == "succeeded", final.message
    history = attempts(db, job_id)
    assert [a.status for a in history] == ["lost", "succeeded"]
    assert final.resumed_from_iteration == kept >= 130
    assert trial_numbers(db, job_id) == list(range(300)) and config_count(db, job_id) == 1
    db.expire_all()
    rows = db.query(Trial).filter(Trial.job_id == job_id).order_by(Trial.number).all()
    first, second = history[0].id, history[1].id
    assert all(r.attempt_id == first for r in rows[:kept]), "finished trials were not redone"
    assert all(r.attempt_id == second for r in rows[kept:])
    assert [r.window for r in rows] == [0] * 100 + [1] * 100 + [2] * 100
    print(f"\nwalk-forward kill -9: {kept} of 300 trials kept across the kill")
