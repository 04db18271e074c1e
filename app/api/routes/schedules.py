"""/api/v2/training/schedules: cron schedules that start training jobs (fired by the
maintenance pass, exactly once per tick)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from app.api import presenters
from app.api.deps import CommitDep, SessionDep
from app.api.errors import responses
from app.api.schemas import ScheduleCreate, ScheduleDetail, SchedulePage, ScheduleUpdate
from app.repositories import schedules as schedules_repo
from app.services import schedules as schedules_service

router = APIRouter(prefix="/api/v2/training/schedules", tags=["schedules"], responses=responses(401, 500, 503))

_BY_ID = responses(404, 422)
_WITH_BODY = responses(400, 413, 422)


def _detail(session, schedule_id: uuid.UUID) -> ScheduleDetail:
    row = schedules_service.get(session, schedule_id)
    return presenters.schedule_detail(row, schedules_repo.recent_fires(session, schedule_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleDetail,
    responses={**_WITH_BODY, 409: {**responses(409)[409], "description": "a schedule with this name exists"}},
)
def create_schedule(body: ScheduleCreate, session: SessionDep, commit: CommitDep) -> ScheduleDetail:
    row = schedules_service.create(session, **body.changes())
    commit()
    return _detail(session, row.id)


@router.get("", response_model=SchedulePage)
def list_schedules(session: SessionDep) -> SchedulePage:
    return SchedulePage(items=[presenters.schedule(row) for row in schedules_repo.list_all(session)])


@router.get("/{schedule_id}", response_model=ScheduleDetail, responses=_BY_ID)
def get_schedule(schedule_id: uuid.UUID, session: SessionDep) -> ScheduleDetail:
    """The schedule, its next fire time, and its latest fires with their jobs' outcomes."""
    return _detail(session, schedule_id)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleDetail,
    responses={
        **_WITH_BODY,
        **_BY_ID,
        409: {**responses(409)[409], "description": "a schedule with this name exists; or its cron never fires"},
    },
)
def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleUpdate, session: SessionDep, commit: CommitDep
) -> ScheduleDetail:
    schedules_service.update(session, schedule_id, **body.changes())
    commit()
    return _detail(session, schedule_id)


@router.post("/{schedule_id}/pause", response_model=ScheduleDetail, responses=_BY_ID)
def pause_schedule(schedule_id: uuid.UUID, session: SessionDep, commit: CommitDep) -> ScheduleDetail:
    schedules_service.pause(session, schedule_id)
    commit()
    return _detail(session, schedule_id)


@router.post(
    "/{schedule_id}/resume",
    response_model=ScheduleDetail,
    responses={**_BY_ID, 409: {**responses(409)[409], "description": "the schedule's cron never fires"}},
)
def resume_schedule(schedule_id: uuid.UUID, session: SessionDep, commit: CommitDep) -> ScheduleDetail:
    """Ticks that passed while paused are not caught up: the next fire is the next tick."""
    schedules_service.resume(session, schedule_id)
    commit()
    return _detail(session, schedule_id)


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_BY_ID)
def delete_schedule(schedule_id: uuid.UUID, session: SessionDep, commit: CommitDep) -> Response:
    """The schedule and its fire history go; the jobs it started stay."""
    schedules_service.delete(session, schedule_id)
    commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
