"""What a user can do to a job: start, cancel, retry, look. Routes and the CLI call these;
they take a Session and leave the commit to the caller: `dispatch.commit_and_send` (or
`dispatch.unit_of_work`) commits, then sends what the transitions recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy.orm import Session

from app.db import transaction
from app.engine import registry
from app.engine.errors import UnknownStrategy
from app.kinds import get_kind, limits
from app.models import Job
from app.repositories import attempts as attempts_repo
from app.repositories import job_reads
from app.repositories import jobs as jobs_repo
from app.services import candles as candles_service
from app.services import dispatch, lifecycle
from app.services.errors import Conflict, InvalidRequest, NotFound, QueueFull
from app.settings import Settings
from app.status import JobStatus, Priority


@dataclass(frozen=True)
class StartResult:
    """What a start answers: the job's progress row (`job_reads`), and whether it was created
    now (then `job` is the new row, for its dispatch) or replayed from its idempotency key."""

    row: Any
    created: bool
    job: Job | None = None


def request_hash(kind: str, priority: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "priority": priority, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def start(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    priority: str,
    params: dict[str, Any],
    idempotency_key: str | None,
) -> StartResult:
    """Create a queued job (not committed). Same idempotency key and body: the existing job.

    Three statements for a new training job: the candle check, the admission lock, and one
    insert that admits the job only while the queue has room and its key is new (one more,
    the key lookup, when a key is given). The dispatch is sent after commit."""
    digest = request_hash(kind, priority, params)
    if idempotency_key and (row := job_reads.by_key(session, idempotency_key)):
        return _replay(row, digest)
    if kind == "training":
        _check_candles(session, settings, params)
    job = _new_job(settings, kind, priority, params, idempotency_key, digest)
    if jobs_repo.admit(session, job, settings.max_queued_jobs):
        dispatch.send_after_commit(session, job)
        return _created(job)
    if idempotency_key and (row := job_reads.by_key(session, idempotency_key)):
        return _replay(row, digest)  # the same key, committed concurrently
    raise _queue_full(settings)


async def start_from_loop(
    work: dispatch.LoopWork,
    settings: Settings,
    checks: candles_service.KeptChecks,
    *,
    kind: str,
    priority: str,
    params: dict[str, Any],
    idempotency_key: str | None,
) -> StartResult:
    """`start` on an autocommit connection of the event loop (the API's start), committed when
    it returns; the dispatch of a created job is in `work`'s outbox, sent when its block ends.
    The candle check (the kept one when there is one), then the admission in one round trip
    (`admit_from_loop`), which writes the job only while the candles are at the revision the
    check saw. If they are not (and only then: a full queue is answered at once), the candles
    are checked once more and the job admitted on that check (no revision to compare)."""
    digest = request_hash(kind, priority, params)
    conn = work.conn
    if idempotency_key and (row := await job_reads.read_by_key(conn, idempotency_key)):
        return _replay(row, digest)
    job = _new_job(settings, kind, priority, params, idempotency_key, digest)
    revision = await _check_from_loop(conn, settings, checks, params, reuse=True) if kind == "training" else None
    admission = await jobs_repo.admit_from_loop(conn, job, settings.max_queued_jobs, candle_revision=revision)
    if admission is jobs_repo.Admission.CANDLES_MOVED:  # changed since the kept check
        await _check_from_loop(conn, settings, checks, params, reuse=False)
        admission = await jobs_repo.admit_from_loop(conn, job, settings.max_queued_jobs)
    if admission is jobs_repo.Admission.ADMITTED:
        work.outbox.append(job)
        return _created(job)
    if idempotency_key and (row := await job_reads.read_by_key(conn, idempotency_key)):
        return _replay(row, digest)  # the same key, committed concurrently
    raise _queue_full(settings)


async def _check_from_loop(
    conn: AsyncConnection,
    settings: Settings,
    checks: candles_service.KeptChecks,
    params: dict[str, Any],
    *,
    reuse: bool,
) -> int | None:
    """A training start's candle check on the event loop: the kept one if `reuse` finds one,
    else a fresh one, kept when it passes. The candle revision the admission must still find
    (None: nothing to compare, as for a check made after the candles moved)."""
    key = checks.key(params, settings.max_bars_per_job)
    if reuse and (kept := checks.get(key)) is not None:
        return kept.revision
    check = await candles_service.check_request_from_loop(conn, params, max_bars=settings.max_bars_per_job)
    if check.problem or check.bars_to_load > settings.max_bars_per_job:
        # Rare, and the message needs an exact count: the ORM path, in a thread. If the candles
        # changed meanwhile and it passes, the job is admitted on that check.
        await asyncio.to_thread(_check_candles_in_session, settings, params)
        return None
    checks.keep(key, check)
    return check.revision if reuse else None


def _new_job(
    settings: Settings, kind: str, priority: str, params: dict[str, Any], idempotency_key: str | None, digest: str
) -> Job:
    """A new queued job with its first dispatch id, not yet written."""
    job = Job(
        id=uuid.uuid4(),
        kind=kind,
        status=JobStatus.QUEUED,
        priority=priority,
        params=_with_default_costs(settings, kind, params),
        idempotency_key=idempotency_key,
        request_hash=digest,
        n_iterations=get_kind(kind).count_iterations(params),
        max_attempts=limits(settings, kind).max_attempts,
        percent=0.0,
        attempts=0,
        message="waiting for a worker",
    )
    dispatch.assign(job)
    return job


def _with_default_costs(settings: Settings, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """A training job's parameters with the costs its request left out taken from the settings,
    so the job keeps the costs it was accepted with, and with the package and version of its
    strategy installed here, which the worker must have too (`registry.for_job`). They are
    stored, not hashed: the request's hash is of what was sent."""
    if kind != "training":
        return params
    try:
        strategy = registry.get_strategy(params["strategy"])
    except UnknownStrategy as exc:  # a schedule's template naming a strategy since uninstalled
        raise InvalidRequest(str(exc), field="strategy") from None
    return {
        "fee_bps": settings.default_fee_bps,
        "slippage_bps": settings.default_slippage_bps,
        **params,
        "strategy_package": strategy.package,
        "strategy_version": strategy.version,
    }


def start_smoke(session: Session, settings: Settings, *, priority: str = Priority.HIGH, **params: Any) -> Job:
    """A smoke job (not committed): the CLI's `trad smoke`, the deploy health check, benchmarks."""
    return start(
        session,
        settings,
        kind="smoke",
        priority=priority,
        params=params,
        idempotency_key=None,
    ).job


def _check_candles(session: Session, settings: Settings, params: dict[str, Any]) -> None:
    """Enough candles for the job, and at most `max_bars_per_job` bars to load (memory is
    bounded per job process): one query, which counts bars only up to the bound."""
    check = candles_service.check_request(session, params, max_bars=settings.max_bars_per_job)
    if check.problem:
        raise InvalidRequest(*check.problem)
    if check.bars_to_load > settings.max_bars_per_job:
        symbol, timeframe = params["symbol"], params["timeframe"]
        start, end = (datetime.fromisoformat(params[k]) if params.get(k) else None for k in ("start", "end"))
        n = candles_service.bars_to_load(session, symbol, timeframe, start, end)  # the exact figure, for the message
        span = f"{params.get('start') or 'the first bar'} to {params.get('end') or 'the last bar'}"
        raise InvalidRequest(
            f"start/end: {symbol} {timeframe} from {span} reads {n:,} stored bars; one job may read at most "
            f"{settings.max_bars_per_job:,} (MAX_BARS_PER_JOB): narrow start/end",
            "start" if params.get("start") and not params.get("end") else "end",
        )


def _check_candles_in_session(settings: Settings, params: dict[str, Any]) -> None:
    with transaction(settings.database_url) as session:
        _check_candles(session, settings, params)


def _queue_full(settings: Settings) -> QueueFull:
    return QueueFull(f"the queue holds {settings.max_queued_jobs} jobs already; try again later", retry_after_s=30)


def _admit(session: Session, settings: Settings) -> None:
    """Backpressure: refuse new work beyond `max_queued_jobs` queued jobs. Admissions are
    serialised until the transaction ends, so concurrent starts cannot overshoot."""
    jobs_repo.lock_admission(session)
    if jobs_repo.count_queued(session) >= settings.max_queued_jobs:
        raise _queue_full(settings)


def _created(job: Job) -> StartResult:
    return StartResult(job_reads.row_of(job), created=True, job=job)


def _replay(row, digest: str) -> StartResult:
    """The start answered by the job its key created (a row of `job_reads.by_key`)."""
    if row.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request body")
    return StartResult(row, created=False)


def get(session: Session, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


async def read_progress(conn: AsyncConnection, job_id: uuid.UUID):
    """A job's progress row (see `job_reads.read_progress`); NotFound if there is no such job."""
    return _found(await job_reads.read_progress(conn, job_id), job_id)


def progress(session: Session, job_id: uuid.UUID):
    """`read_progress` under a Session (the same statement)."""
    return _found(job_reads.progress(session, job_id), job_id)


def _found(row, job_id: uuid.UUID):
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return row


def cancel(session: Session, job_id: uuid.UUID) -> Job:
    """Cancel a job: a queued job at once (its dispatch leaves Redis after commit); a running
    one gets a durable cancel request its attempt acts on. Finished: Conflict."""
    job = _locked(session, job_id)
    try:
        lifecycle.request_cancel(session, job)
    except lifecycle.IllegalTransition:
        raise Conflict(f"job is already {job.status}") from None
    return job


def retry(session: Session, settings: Settings, job_id: uuid.UUID) -> Job:
    """Queue a failed or canceled job again, keeping its attempt history and its trials."""
    job = _locked(session, job_id)
    if not JobStatus(job.status).is_retryable:
        raise Conflict(f"only failed or canceled jobs can be retried; this one is {job.status}")
    _admit(session, settings)
    lifecycle.retry(
        session,
        job,
        counted_failures=attempts_repo.counted_failures(session, job.id),
        max_attempts=limits(settings, job.kind).max_attempts,
    )
    return job


def _locked(session: Session, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, job_id, for_update=True)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job
