"""Every line written for a job carries its id, RQ's own lines included."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid

import pytest

from app import logs
from app.execution.heartbeat import Heartbeat
from app.settings import Settings


@pytest.fixture
def captured():
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    logs.configure("INFO", process="test")
    out = io.StringIO()
    root.handlers[0].setStream(out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    root.handlers[:] = saved
    root.setLevel(level)


def test_rq_lines_name_the_job_by_its_trad_id(captured):
    job_id = str(uuid.uuid4())
    rq_job_id = f"{job_id}_{uuid.uuid4().hex[:12]}"
    logging.getLogger("rq.worker").info("%s: %s (%s)", "normal", "app.jobs.run()", rq_job_id)
    logging.getLogger("rq.worker").info("Successfully completed %s job in %s", "app.jobs.run()", "0:00:01")
    logging.getLogger("app.other").info("not about %s", rq_job_id)
    with logs.job_context(job_id):
        logging.getLogger("app.training").info("iteration done")
    lines = captured()
    assert lines[0]["job_id"] == job_id
    assert "job_id" not in lines[1]  # names no job: no guess
    assert "job_id" not in lines[2]  # only RQ's lines are read for an id
    assert lines[3]["job_id"] == job_id


def test_the_heartbeat_threads_lines_carry_the_job_id(captured):
    """The heartbeat runs in its own thread, where the job's context is not inherited by itself."""
    job_id = str(uuid.uuid4())
    settings = Settings(database_url="postgresql://trad@127.0.0.1:1/none", heartbeat_interval_s=1.0)
    with logs.job_context(job_id):
        beat = Heartbeat(settings, 1, timeout_s=60, stall_timeout_s=60, last_progress=time.monotonic)
    beat.start()
    deadline = time.monotonic() + 15
    while not any("heartbeat not written" in line["message"] for line in captured()):
        assert time.monotonic() < deadline, captured()
        time.sleep(0.05)
    beat.stop()
    beat.join(5)
    line = next(line for line in captured() if "heartbeat not written" in line["message"])
    assert line["job_id"] == job_id
