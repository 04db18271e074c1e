"""Expand/contract: the schema at head must still serve the previous release's code, because a
deploy migrates while the old workers run and a rollback restores the old code without
downgrading. The previous release is the code just before the newest change to
migrations/versions/ (or, while only the first migration exists, the commit before HEAD). Its
API and a burst worker, run from a `git archive` of that commit against a database upgraded to
head, must take a training job from submit to a saved configuration."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import psycopg
import pytest

from app.dev.servers import free_port, wait_for_port
from app.migrate import upgrade
from app.services import candles as candles_service
from tests.support import ROOT, TOKEN, process_env, wait_until


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def previous_release() -> str | None:
    try:
        newest = git("log", "-1", "--format=%H", "--", "migrations/versions")
        for candidate in (f"{newest}^", "HEAD^"):
            ref = git("rev-parse", "--verify", "--quiet", candidate)
            if ref and git("ls-tree", "--name-only", ref, "migrations/versions/"):
                return ref
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return None


@pytest.fixture
def head_database(postgres, clean):
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="trad", dbname="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS previous_release")
        c.execute("CREATE DATABASE previous_release")
    url = postgres.url.rsplit("/", 1)[0] + "/previous_release"
    upgrade(url)  # head, by this release's migrations
    return clean.model_copy(update={"database_url": url})


def test_previous_release_runs_against_the_head_schema(head_database, tmp_path):
    ref = previous_release()
    if ref is None:
        pytest.skip("not a git checkout with history")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "app", "worker.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    old = tmp_path / "previous"
    old.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old, filter="data")
    from app.db import transaction

    with transaction(head_database.database_url) as session:
        candles_service.generate_synthetic(session, "BTCUSDT", "1m", 3_000, seed=1)
    port = free_port()
    env = {**process_env(head_database), "API_PORT": str(port), "PYTHONPATH": str(old)}
    api = subprocess.Popen([sys.executable, "-m", "app.api"], cwd=old, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, api)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"})
        body = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 3, "seed": 1}
        fields = http.get("/openapi.json").json()["components"]["schemas"]["StartTraining"]["properties"]
        if "min_trades" in fields:  # a release that refuses degenerate winners: let a 3-trial search succeed
            body["min_trades"] = 1
        resp = http.post("/api/v2/training/start", json=body)
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        worker = subprocess.run(
            [sys.executable, str(Path(old) / "worker.py"), "--name", "previous", "--burst"],
            cwd=old,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        final = wait_until(
            lambda: (p := http.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"] != "queued" and p,
            timeout=30,
            what="the previous release's job to end",
        )
        assert final["status"] == "succeeded", final
        listed = http.get("/api/v2/training/configurations", params={"symbol": "BTCUSDT"})
        assert listed.status_code == 200 and listed.json()["total"] == 1, listed.text
    finally:
        api.terminate()
        api.wait(15)
