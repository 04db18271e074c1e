"""/api/v2/training: start, look at, cancel and retry jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from redis.exceptions import RedisError

from app import queue
from app.api import follow, presenters
from app.api.deps import CommitDep, RedisDep, SessionDep, SettingsDep, StateDep
from app.api.errors import responses
from app.api.schemas import (
    MAX_OFFSET,
    JobDetail,
    JobPage,
    Kind,
    Progress,
    QueueInfo,
    StartAccepted,
    StartTraining,
    Status,
    StrategyName,
    WorkerInfo,
)
from app.loop_pool import LoopPool
from app.repositories import attempts as attempts_repo
from app.repositories import configurations as configurations_repo
from app.repositories import job_reads
from app.repositories import jobs as jobs_repo
from app.repositories import results as results_repo
from app.services import jobs as jobs_service
from app.services.errors import NotFound
from app.status import JobStatus

router = APIRouter(prefix="/api/v2/training", tags=["training"], responses=responses(401, 500, 503))

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[!-~]+$")
]


def _progress_url(request: Request, job_id: uuid.UUID) -> str:
    # The route's path, written out: `request.url_for` walks every route (docs/benchmarks.md).
    return f"{request.base_url}{router.prefix.lstrip('/')}/jobs/{job_id}/progress"


@router.post(
    "/start",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
    responses={
        200: {"model": StartAccepted, "description": "replay of an earlier request with the same Idempotency-Key"},
        **responses(400, 409, 413, 422, 429),
    },
)
async def start_training(
    body: StartTraining,
    request: Request,
    settings: SettingsDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accept a training job. It is committed to PostgreSQL before it is enqueued; if Redis is
    down the job is still accepted and the reconciler enqueues it once Redis is back.

    On the event loop: the candle check, then BEGIN, the admission lock, the insert and COMMIT
    in one round trip (`jobs_service.start_from_loop`); then, as the unit of work ends, the
    enqueue, in a thread (a Redis client that blocks must not block the loop) together with those
    of concurrent starts."""
    async with state.start_sender.unit_of_work(state.start_pool.connection(), settings) as work:
        result = await jobs_service.start_from_loop(
            work,
            settings,
            state.candle_checks,
            kind="training",
            priority=body.priority,
            params=body.job_params(),
            idempotency_key=idempotency_key,
        )
    view = presenters.progress_fields(result.row)
    accepted = StartAccepted(**view, progress_url=_progress_url(request, result.row.id))
    code = status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK
    return Response(accepted.model_dump_json(), status_code=code, media_type="application/json")


@router.get("/jobs", response_model=JobPage, responses=responses(422))
async def list_jobs(
    state: StateDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    kind: Kind | None = None,
    strategy: Annotated[StrategyName | None, Query(description="training jobs of one strategy")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    """One query on the event loop (`job_reads.read_page`); the page is serialised once."""
    async with state.read_pool.connection() as conn:
        rows, total = await job_reads.read_page(
            conn, status=status_filter, kind=kind, strategy=strategy, limit=limit, offset=offset
        )
    items = presenters.progress_page(rows)
    page = JobPage(items=items, total=total, limit=limit, offset=offset)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=responses(404, 422))
def get_job(job_id: uuid.UUID, session: SessionDep) -> JobDetail:
    job = jobs_service.get(session, job_id)
    return presenters.detail(job, attempts_repo.for_job(session, job_id), configurations_repo.for_job(session, job_id))


@router.get(
    "/jobs/{job_id}/progress",
    response_model=Progress,
    name="job_progress",
    responses={
        200: {
            "content": {follow.NDJSON: {}, follow.SSE: {}},
            "description": "with follow=true: one JSON line per change until the job ends; with "
            "Accept: text/event-stream: Server-Sent Events (resume with Last-Event-ID)",
        },
        204: {"description": "Server-Sent Events: the job has ended and the client has its last event"},
        **responses(404, 422),
        429: {"description": "too many progress streams open, in total or from this client"},
    },
)
async def get_progress(
    job_id: uuid.UUID,
    request: Request,
    state: StateDep,
    follow_: Annotated[bool, Query(alias="follow", description="stream NDJSON lines until the job ends")] = False,
    accept: Annotated[str | None, Header()] = None,
    # Typed `int` with a None default so the OpenAPI document offers an integer only: a header
    # cannot be null, and "null" is not an event id.
    last_event_id: Annotated[int, Header(alias="Last-Event-ID", ge=0)] = None,  # noqa: RUF013
):
    # One statement on the event loop; the connection is back in the pool before the answer is
    # written, so a stream holds no database connection and no transaction.
    view = await progress_view(state.read_pool, job_id)
    sse = follow.SSE in (accept or "")
    if not (follow_ or sse):
        # Built and checked as a Progress already: serialised once, not validated again.
        return Response(view.model_dump_json(), media_type="application/json")
    if sse and view.status.is_finished and last_event_id == follow.event_id(view):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    hub = state.follow_hub
    try:
        release = hub.admit(request.client.host if request.client else "")
    except follow.TooManyStreams as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=exc.message, headers={"Retry-After": "5"}
        ) from None
    stream = hub.follow(job_id, view, sse=sse, last_event_id=last_event_id if sse else None)
    return follow.FollowResponse(stream, media_type=follow.SSE if sse else follow.NDJSON, release=release)


async def progress_view(pool: LoopPool, job_id: uuid.UUID) -> Progress:
    """A job's progress body: one statement on the event loop. NotFound if there is no such job."""
    async with pool.connection() as conn:
        row = await jobs_service.read_progress(conn, job_id)
    return presenters.progress_of(row)


async def read_progress(pool: LoopPool, job_id: uuid.UUID) -> Progress | None:
    """One short read of a job's progress body for the follow hub (None if it no longer exists)."""
    try:
        return await progress_view(pool, job_id)
    except NotFound:
        return None


@router.delete(
    "/jobs/{job_id}", response_model=Progress, status_code=status.HTTP_202_ACCEPTED, responses=responses(404, 409, 422)
)
def cancel_job(job_id: uuid.UUID, session: SessionDep, commit: CommitDep) -> Progress:
    """Cancel: a queued job ends `canceled` now; a running job is asked to stop and ends
    `canceled` at its next iteration (or is killed after the grace period). Finished: 409."""
    jobs_service.cancel(session, job_id)
    commit()
    return presenters.progress_of(jobs_service.progress(session, job_id))


@router.post(
    "/jobs/{job_id}/retry",
    response_model=Progress,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404, 409, 422, 429),
)
def retry_job(job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, commit: CommitDep) -> Progress:
    jobs_service.retry(session, settings, job_id)
    commit()
    return presenters.progress_of(jobs_service.progress(session, job_id))


@router.get("/queue", response_model=QueueInfo)
def queue_info(session: SessionDep, redis: RedisDep) -> QueueInfo:
    counts = jobs_repo.count_by_status(session)
    try:
        depth = queue.queue_depths(redis)
        workers, redis_ok = queue.worker_count(redis), True
        registered = queue.registered_workers(redis)
    except RedisError:
        depth, workers, redis_ok, registered = {p: 0 for p in queue.QUEUE_NAMES}, 0, False, []
    running = results_repo.running_attempts_by_worker(session)
    worker_list = []
    for name, state, host in registered:
        job_id, attempt = running.get(name, (None, None))
        worker_list.append(WorkerInfo(name=name, host=host, state=state, job_id=job_id, attempt=attempt))
    return QueueInfo(
        depth=depth,
        queued=counts.get(JobStatus.QUEUED, 0),
        running=counts.get(JobStatus.RUNNING, 0),
        failed=counts.get(JobStatus.FAILED, 0),
        workers=workers,
        worker_list=worker_list,
        redis_ok=redis_ok,
    )
