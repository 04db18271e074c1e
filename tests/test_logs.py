"""Every line written for a job carries its id, RQ's own lines included."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from app import logs


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
