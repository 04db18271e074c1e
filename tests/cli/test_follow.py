"""`trad jobs follow ID`: live progress in the terminal, exit status = the job's outcome; and
settings read from systemd's credentials directory."""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest

from app import progress_line
from app.models import Job
from app.repositories import job_reads
from app.status import FINISHED_JOB_STATUSES
from tests.support import ROOT, process_env, submit_smoke


def trad(settings, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """`python -m app.cli ARGS` in a subprocess; `env` adds variables, or removes them (None)."""
    full = process_env(settings)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def snap(**over) -> job_reads.ProgressRow:
    base = dict.fromkeys(job_reads.ProgressRow._fields)
    base.update(
        status="running",
        phase="training",
        percent=42.0,
        iteration=126,
        n_iterations=300,
        best_score=1.23456,
        eta_seconds=65.4,
        message=None,
    )
    return job_reads.ProgressRow(**{**base, **over})


def test_line_shows_phase_percent_iteration_best_score_and_eta():
    line = progress_line.render(snap())
    assert line.startswith("running")
    assert "[" + "#" * 10 + "." * 14 + "]  42.0%" in line  # 24 wide, 42 % → 10 filled
    for part in ("training", "iter 126/300", "best 1.235", "ETA 1m05s"):
        assert part in line, part
    done = progress_line.render(
        snap(status="failed", eta_seconds=3.0, error_type="DataError", error_message="no candles")
    )
    assert "ETA" not in done and done.endswith("DataError: no candles")


def test_follow_prints_each_change_once_and_returns_the_outcome():
    states = iter([snap(percent=10.0), snap(percent=10.0), snap(percent=50.0), snap(status="canceled", percent=50.0)])
    out = io.StringIO()
    assert progress_line.follow(lambda: next(states), out, sleep=lambda _: None) == 4
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("canceled")


def test_follow_a_real_job_to_success(clean, db, workers):
    job = submit_smoke(db, clean)
    workers("w1")
    result = trad(clean, "jobs", "follow", str(job.id), "--interval", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("succeeded") and "100.0%" in last, result.stdout


def test_exit_status_is_the_outcome(clean, db):
    canceled = submit_smoke(db, clean)
    assert trad(clean, "jobs", "cancel", str(canceled.id)).returncode == 0
    failed = submit_smoke(db, clean)
    db.get(Job, failed.id).status = "failed"
    db.commit()
    assert trad(clean, "jobs", "follow", str(canceled.id)).returncode == 4
    assert trad(clean, "jobs", "follow", str(failed.id)).returncode == 1
    missing = trad(clean, "jobs", "follow", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2 and "no job with id" in missing.stderr


def test_secrets_come_from_the_credentials_directory(clean, tmp_path):
    """As under systemd's LoadCredential=: no secret in the environment, one file per secret."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "database_url").write_text(clean.database_url)
    (creds / "redis_url").write_text(clean.redis_url)
    env_without: dict[str, str | None] = {"DATABASE_URL": None, "REDIS_URL": None, "API_TOKEN": None}
    result = trad(clean, "jobs", "list", env={**env_without, "CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    (creds / "database_url").write_text("postgresql+psycopg://trad@127.0.0.1:1/trad")
    down = trad(clean, "jobs", "list", env={**env_without, "CREDENTIALS_DIRECTORY": str(creds)})
    assert down.returncode == 3 and "PostgreSQL is unreachable" in down.stderr


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_follow_stops_on_a_signal_without_a_terminal(clean, db, signum, status):
    """From a script or under `timeout`: no terminal, and SIGINT inherited as ignored (as a
    non-interactive shell leaves it for a background command). Following still stops."""
    job = submit_smoke(db, clean)  # queued, no worker: it would be followed forever
    follower = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "jobs", "follow", str(job.id), "--interval", "0.2"],
        cwd=ROOT,
        env=process_env(clean),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert follower.stdout.readline().startswith("queued")  # it is following
        follower.send_signal(signum)
        out, err = follower.communicate(timeout=10)
    finally:
        follower.kill()
    assert follower.returncode == status, (out, err)
    assert "stopped following; the job carries on" in err
    assert db.get(Job, job.id).status == "queued"


def test_every_way_a_job_ends_has_an_exit_status():
    """`follow` stops at every finished status (from app.status) and exits with that status's code."""
    assert set(progress_line.EXIT_STATUS) == set(FINISHED_JOB_STATUSES)
    assert len(set(progress_line.EXIT_STATUS.values())) == len(FINISHED_JOB_STATUSES)
