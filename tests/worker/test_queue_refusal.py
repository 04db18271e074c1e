"""What a worker accepts from a queue (DESIGN invariant 14): exactly what `queue.enqueue`
writes, judged from the entry as a worker reads it back from Redis, without importing anything
it names."""

from __future__ import annotations

import sys
import uuid

import pytest
from rq import Callback
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from app import queue
from app.queue import Dispatch

JOB_ID = str(uuid.uuid4())


def read_back(redis, job: RQJob) -> RQJob:
    """The entry as a worker sees it: saved to Redis and fetched again."""
    job.save()
    return RQJob.fetch(job.id, connection=redis, serializer=JSONSerializer)


def entry(redis, func="app.jobs.run", args=(JOB_ID,), **options) -> RQJob:
    return read_back(redis, RQJob.create(func, args=list(args), connection=redis, serializer=JSONSerializer, **options))


def test_what_enqueue_writes_is_accepted(redis):
    queue.enqueue(redis, [Dispatch(JOB_ID, f"{JOB_ID}_1", "normal", 60)])
    assert queue.refusal(RQJob.fetch(f"{JOB_ID}_1", connection=redis, serializer=JSONSerializer)) is None


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"func": "os.makedirs", "args": ["/tmp/x"]}, "function 'os.makedirs' is not a job kind's entrypoint"),
        ({"func": "app.kinds.smoke.run_smoke_job"}, "is not a job kind's entrypoint"),
        ({"on_success": Callback("os.getcwd")}, "callback"),
        ({"on_failure": Callback("os.getcwd")}, "callback"),
        ({"on_stopped": Callback("os.getcwd")}, "callback"),
        ({"depends_on": "another-entry"}, "dependencies"),
        ({"args": []}, "takes one job id"),
        ({"args": [JOB_ID, JOB_ID]}, "takes one job id"),
        ({"args": ["not-a-uuid"]}, "takes one job id"),
        ({"args": [1]}, "takes one job id"),
        ({"kwargs": {"job_id": JOB_ID}}, "takes one job id"),
    ],
)
def test_anything_else_is_refused(redis, options, why):
    reason = queue.refusal(entry(redis, **options))
    assert reason is not None and reason.startswith("refused: ") and why in reason, reason


def test_webhooks_are_refused(redis):
    """RQ would send an HTTP request from the worker when the job ends."""
    job = RQJob.create("app.jobs.run", args=[JOB_ID], connection=redis, serializer=JSONSerializer)
    job.webhooks = [Webhook("http://127.0.0.1:9/", "finished")]
    reason = queue.refusal(read_back(redis, job))
    assert reason is not None and "webhooks" in reason, reason


@pytest.mark.parametrize(
    "data",
    [b"\x80\x04not json", b'{"a": 1}', b'[["app.jobs.run"], null, [], {}]', b'["app.jobs.run", {"x": 1}, [], {}]'],
)
def test_data_that_is_not_a_call_is_refused(redis, data):
    job = RQJob.create("app.jobs.run", args=[JOB_ID], connection=redis, serializer=JSONSerializer)
    redis.hset(job.key, mapping={**job.to_dict(), "data": data})
    reason = queue.refusal(RQJob.fetch(job.id, connection=redis, serializer=JSONSerializer))
    assert reason is not None and reason.startswith("refused: "), reason


def test_judging_an_entry_imports_nothing_it_names(redis):
    name = "tests.never_imported_module"
    job = entry(redis, func=f"{name}.run", on_success=Callback(f"{name}.a"), on_stopped=Callback(f"{name}.b"))
    assert queue.refusal(job) is not None
    assert name not in sys.modules


def test_a_trad_job_resolves_nothing_but_the_entrypoint_and_no_callback(redis):
    """Wherever RQ resolves a job read through trad's queues (job process, stopped-job
    handling, registry cleanup), nothing an entry names beyond the entrypoint is imported."""
    name = "tests.never_imported_module"
    planted = entry(redis, func=f"{name}.run", on_failure=Callback(f"{name}.a"), on_stopped=Callback(f"{name}.b"))
    job = queue.TradJob.fetch(planted.id, connection=redis, serializer=JSONSerializer)
    with pytest.raises(queue.RefusedEntry, match="is not a job kind's entrypoint"):
        job.func  # noqa: B018 - the property is what RQ calls
    assert (job.success_callback, job.failure_callback, job.stopped_callback) == (None, None, None)
    assert name not in sys.modules
    legit = queue.TradJob.fetch(entry(redis).id, connection=redis, serializer=JSONSerializer)
    from app.jobs import run

    assert legit.func is run


def test_trad_queues_read_jobs_as_trad_jobs(redis):
    assert all(q.job_class is queue.TradJob for q in queue.all_queues(redis))
