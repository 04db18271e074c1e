"""`TradWorker` replaces RQ internals: each override was written against one RQ version's
signature and behaviour. This pins RQ's signature of every method it overrides, so an RQ upgrade
that changes one fails here, by name, instead of in a worker under systemd; and an override
added without recording RQ's signature fails too.

When this fails after an upgrade: read RQ's new method, adapt the override, then record the new
signature below."""

from __future__ import annotations

import inspect

import pytest
import rq
from rq import Worker

from app.worker import TradWorker

# RQ's signatures (rq 3.0.0) of the methods TradWorker overrides, or may override.
RQ_SIGNATURES = {
    "__init__": (
        "(self, queues: 'str | Queue | Sequence[str] | Sequence[Queue]', name: 'str | None' = None,"
        " default_result_ttl=500, connection: 'Redis | None' = None, exception_handlers=None,"
        " maintenance_interval: 'int' = 600, default_worker_ttl: 'int | None' = None,"
        " worker_ttl: 'int | None' = None, job_class: 'type[Job] | str | None' = None,"
        " queue_class: 'type[Queue] | str | None' = None, log_job_description: 'bool' = True,"
        " job_monitoring_interval=30, disable_default_exception_handler: 'bool' = False,"
        " prepare_for_work: 'bool' = True, serializer: 'Serializer | str | None' = None,"
        " work_horse_killed_handler: 'Callable[[Job, int, int, struct_rusage], None] | None' = None)"
    ),
    "execute_job": "(self, job: 'Job', queue: 'Queue')",
    "set_shutdown_requested_date": "(self)",
    "teardown": "(self)",
    "check_for_suspension": "(self, burst: 'bool')",
    "dequeue_job_and_maintain_ttl": (
        "(self, timeout: 'int | None', max_idle_time: 'int | None' = None) -> 'tuple[Job, Queue] | None'"
    ),
    "register_birth": "(self)",
    "request_stop": "(self, signum, frame)",
    "setup_work_horse_signals": "(self)",
    "heartbeat": "(self, timeout: 'int | None' = None, pipeline: 'Pipeline | None' = None)",
    "maintain_heartbeats": "(self, job: 'Job', execution: 'Execution')",
    "subscribe": "(self)",
}
# Class attributes TradWorker sets in place of RQ's, with the type RQ gives them.
RQ_ATTRIBUTES = {"max_connection_wait_time": float}


def overridden() -> list[str]:
    """The names TradWorker defines that rq.Worker has too, read from the class as it is now."""
    dunders = {name for name in vars(TradWorker) if name.startswith("__") and name != "__init__"}
    return sorted(name for name in vars(TradWorker) if name not in dunders and hasattr(Worker, name))


def test_the_overrides_are_the_recorded_ones():
    """Every override is recorded here; a new one needs RQ's signature written down."""
    names = overridden()
    assert len(names) >= 10, names
    assert set(names) <= set(RQ_SIGNATURES) | set(RQ_ATTRIBUTES), set(names) - set(RQ_SIGNATURES) - set(RQ_ATTRIBUTES)


@pytest.mark.parametrize("name", overridden())
def test_rq_still_has_the_overridden_member_as_recorded(name):
    theirs = inspect.getattr_static(Worker, name)
    if name in RQ_ATTRIBUTES:
        assert isinstance(theirs, RQ_ATTRIBUTES[name]), f"rq {rq.__version__}: Worker.{name} is now {theirs!r}"
        return
    assert str(inspect.signature(getattr(Worker, name))) == RQ_SIGNATURES[name], (
        f"rq {rq.__version__} changed Worker.{name}: check TradWorker.{name} against it, then record it"
    )


@pytest.mark.parametrize("name", [n for n in overridden() if n in RQ_SIGNATURES and n != "__init__"])
def test_each_override_takes_what_rq_passes(name):
    """RQ calls the override as it calls its own method: the same parameters, in the same order,
    with the same defaults (annotations aside). __init__ is TradWorker's own constructor."""

    def shape(function) -> list[tuple[str, inspect._ParameterKind, object]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(getattr(TradWorker, name)) == shape(getattr(Worker, name))
