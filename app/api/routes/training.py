"""/api/v2/training: start, look at, cancel and retry jobs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from app import queue
from app.api import presenters
from app.api.deps import RedisDep, SessionDep, SettingsDep
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
from app.db import transaction
from app.repositories import jobs as jobs_repo
from app.repositories import results as results_repo
from app.services import dispatch
from app.services import jobs as jobs_service
from app.status import JobStatus

router = APIRouter(prefix="/api/v2/training", tags=["training"], responses=responses(401, 500, 503))

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[!-~]+$")
]


def _progress_url(request: Request, job_id: uuid.UUID) -> str:
    return str(request.url_for("job_progress", job_id=job_id))


@router.post(
    "/start",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
    responses={
        200: {"model": StartAccepted, "description": "replay of an earlier request with the same Idempotency-Key"},
        **responses(400, 409, 413, 422, 429),
    },
)
def start_training(
    body: StartTraining,
    request: Request,
    response: Response,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> StartAccepted:
    """Accept a training job. It is committed to PostgreSQL before it is enqueued; if Redis is
    down the job is still accepted and the reconciler enqueues it once Redis is back."""
    result = jobs_service.start(
        session,
        settings,
        kind="training",
        priority=body.priority,
        params=body.job_params(),
        idempotency_key=idempotency_key,
    )
    dispatch.commit_and_send(session, redis, settings)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    view = presenters.progress(session, result.job)
    return StartAccepted(**view.model_dump(), progress_url=_progress_url(request, result.job.id))


@router.get("/jobs", response_model=JobPage, responses=responses(422))
def list_jobs(
    session: SessionDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    kind: Kind | None = None,
    strategy: Annotated[StrategyName | None, Query(description="training jobs of one strategy")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobPage:
    rows, total = jobs_service.list_jobs(
        session, status=status_filter, kind=kind, limit=limit, offset=offset, strategy=strategy
    )
    return JobPage(items=presenters.progress_page(session, list(rows)), total=total, limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=responses(404, 422))
def get_job(job_id: uuid.UUID, session: SessionDep) -> JobDetail:
    return presenters.detail(session, jobs_service.get(session, job_id))


@router.get(
    "/jobs/{job_id}/progress",
    response_model=Progress,
    name="job_progress",
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "with follow=true: one JSON line per change until the job ends",
        },
        **responses(404, 422),
    },
)
def get_progress(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    follow: Annotated[bool, Query(description="stream NDJSON lines until the job ends")] = False,
):
    view = presenters.progress(session, jobs_service.get(session, job_id))
    if not follow:
        return view
    return StreamingResponse(_follow(settings.database_url, job_id, view), media_type="application/x-ndjson")


def _follow(
    database_url: str,
    job_id: uuid.UUID,
    first: Progress,
    poll_s: float = 0.5,
    keepalive_s: float = 15.0,
    max_s: float = 6 * 3600,
) -> Iterator[str]:
    """Progress lines from PostgreSQL: one per change, the same line again every `keepalive_s`."""
    last, sent_at, started = first, time.monotonic(), time.monotonic()
    yield first.model_dump_json() + "\n"
    while not last.status.is_finished and time.monotonic() - started < max_s:
        time.sleep(poll_s)
        with transaction(database_url) as session:
            current = presenters.progress(session, jobs_service.get(session, job_id))
        if current != last or time.monotonic() - sent_at >= keepalive_s:
            last, sent_at = current, time.monotonic()
            yield current.model_dump_json() + "\n"


@router.delete(
    "/jobs/{job_id}", response_model=Progress, status_code=status.HTTP_202_ACCEPTED, responses=responses(404, 409, 422)
)
def cancel_job(job_id: uuid.UUID, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> Progress:
    """Cancel: a queued job ends `canceled` now; a running job is asked to stop and ends
    `canceled` at its next iteration (or is killed after the grace period). Finished: 409."""
    job = jobs_service.cancel(session, job_id)
    dispatch.commit_and_send(session, redis, settings)
    return presenters.progress(session, job)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=Progress,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404, 409, 422, 429),
)
def retry_job(job_id: uuid.UUID, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> Progress:
    job = jobs_service.retry(session, settings, job_id)
    dispatch.commit_and_send(session, redis, settings)
    return presenters.progress(session, job)


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
    for name, state in registered:
        job_id, attempt = running.get(name, (None, None))
        worker_list.append(WorkerInfo(name=name, state=state, job_id=job_id, attempt=attempt))
    return QueueInfo(
        depth=depth,
        queued=counts.get(JobStatus.QUEUED, 0),
        running=counts.get(JobStatus.RUNNING, 0),
        failed=counts.get(JobStatus.FAILED, 0),
        workers=workers,
        worker_list=worker_list,
        redis_ok=redis_ok,
    )
