"""Cron schedules of training jobs: what users do to them, and firing the due ones.

Firing runs in the maintenance pass (one process at a time, under its advisory lock). Each
tick acted on is a `schedule_fires` row, unique per (schedule, fire time), so a tick cannot be
fired twice whichever process, restart or clock jump tries; the job is started through the
same path as `POST /start` (admission, idempotency key derived from the tick, commit-then-send).

- Misfire: the latest due tick is older than `schedule_misfire_grace_s` (the service was
  down). `run_once` fires that one tick (one catch-up run, never a burst); `skip` fires none.
- Overlap: `skip` records the tick as skipped while a job of the schedule is queued or running;
  `queue` starts it anyway.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import cron
from app.clock import utcnow
from app.models import Schedule, ScheduleFire
from app.repositories import schedules as schedules_repo
from app.services import jobs as jobs_service
from app.services.errors import Conflict, NotFound, ServiceError
from app.settings import Settings
from app.status import FireOutcome, MisfirePolicy, OverlapPolicy, Priority

log = logging.getLogger(__name__)
EDITABLE = ("name", "cron", "timezone", "template", "lookback", "misfire_policy", "overlap_policy", "paused")


def idempotency_key(schedule_id: uuid.UUID, fire_time: datetime) -> str:
    return f"schedule:{schedule_id}:{fire_time.isoformat()}"


def create(session: Session, *, now: datetime | None = None, **fields: Any) -> Schedule:
    """A new schedule (not committed). `fields` are already validated (EDITABLE names)."""
    _unique_name(session, fields["name"])
    schedule = Schedule(id=uuid.uuid4(), **fields)
    _plan(schedule, now or utcnow())
    session.add(schedule)
    session.flush()
    return schedule


def update(session: Session, schedule_id: uuid.UUID, *, now: datetime | None = None, **changes: Any) -> Schedule:
    schedule = _locked(session, schedule_id)
    if "name" in changes and changes["name"] != schedule.name:
        _unique_name(session, changes["name"])
    for name, value in changes.items():
        setattr(schedule, name, value)
    _plan(schedule, now or utcnow())
    session.flush()
    return schedule


def pause(session: Session, schedule_id: uuid.UUID) -> Schedule:
    return update(session, schedule_id, paused=True)


def resume(session: Session, schedule_id: uuid.UUID, *, now: datetime | None = None) -> Schedule:
    """Ticks that passed while paused are not misfires: the next one is after now."""
    return update(session, schedule_id, now=now, paused=False)


def delete(session: Session, schedule_id: uuid.UUID) -> None:
    session.delete(_locked(session, schedule_id))
    session.flush()


def get(session: Session, schedule_id: uuid.UUID) -> Schedule:
    schedule = schedules_repo.get(session, schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id}")
    return schedule


def resolve(session: Session, ref: str) -> Schedule:
    """A schedule by id or by name (the CLI's argument)."""
    try:
        return get(session, uuid.UUID(ref))
    except ValueError:
        schedule = schedules_repo.get_by_name(session, ref)
    if schedule is None:
        raise NotFound(f"no schedule with id or name {ref!r}")
    return schedule


def fire_due(session: Session, settings: Settings, now: datetime) -> list[uuid.UUID]:
    """Act on every due schedule (not committed); the ids of the jobs started."""
    started: list[uuid.UUID] = []
    for schedule in schedules_repo.due(session, now):
        tick = cron.latest_at_or_before(schedule.cron, schedule.timezone, now)
        late = (now - tick).total_seconds() > settings.schedule_misfire_grace_s
        if schedule.next_fire_at is not None and tick >= schedule.next_fire_at:
            if late and schedule.misfire_policy == MisfirePolicy.SKIP:
                log.info("schedule %s: tick %s missed, skipped by policy", schedule.name, tick.isoformat())
            else:
                job_id = _fire(session, settings, schedule, tick)
                if job_id is not None:
                    started.append(job_id)
        schedule.next_fire_at = cron.next_after(schedule.cron, schedule.timezone, now)
    return started


def _fire(session: Session, settings: Settings, schedule: Schedule, tick: datetime) -> uuid.UUID | None:
    fire = ScheduleFire(schedule_id=schedule.id, fire_time=tick, outcome=FireOutcome.STARTED)
    try:
        with session.begin_nested():
            session.add(fire)
            session.flush()
    except IntegrityError:  # this tick was fired already
        log.info("schedule %s: tick %s already fired", schedule.name, tick.isoformat())
        return None
    schedule.last_fired_at = tick
    if schedule.overlap_policy == OverlapPolicy.SKIP and schedules_repo.has_active_job(session, schedule.id):
        fire.outcome = FireOutcome.SKIPPED_OVERLAP
        fire.message = "the previous job of this schedule is still queued or running"
        log.info("schedule %s: tick %s skipped, previous job still active", schedule.name, tick.isoformat())
        return None
    params = dict(schedule.template)
    priority = params.pop("priority", Priority.NORMAL)
    if schedule.lookback:
        params["start"] = _json_time(tick - cron.lookback(schedule.lookback))
        params["end"] = _json_time(tick)
    try:
        with session.begin_nested():
            result = jobs_service.start(
                session,
                settings,
                kind="training",
                priority=priority,
                params=params,
                idempotency_key=idempotency_key(schedule.id, tick),
            )
    except ServiceError as exc:  # queue full: this tick is refused, the next one tries again
        fire.outcome, fire.message = FireOutcome.REFUSED, exc.message
        log.warning("schedule %s: tick %s refused: %s", schedule.name, tick.isoformat(), exc.message)
        return None
    fire.job_id = result.row.id
    log.info("schedule %s fired for %s", schedule.name, tick.isoformat(), extra={"job_id": str(result.row.id)})
    return result.row.id if result.created else None


def _json_time(instant: datetime) -> str:
    """The form `POST /start` records its start/end in."""
    return instant.isoformat().replace("+00:00", "Z")


def _plan(schedule: Schedule, now: datetime) -> None:
    if not schedule.paused and not cron.fires(schedule.cron):  # stored paused by an older release
        raise Conflict(f"the schedule's cron {schedule.cron!r} never fires: give it one that does")
    schedule.next_fire_at = None if schedule.paused else cron.next_after(schedule.cron, schedule.timezone, now)
    schedule.updated_at = now


def _unique_name(session: Session, name: str) -> None:
    if schedules_repo.get_by_name(session, name) is not None:
        raise Conflict(f"a schedule named {name!r} exists already")


def _locked(session: Session, schedule_id: uuid.UUID) -> Schedule:
    schedule = schedules_repo.get(session, schedule_id, for_update=True)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id}")
    return schedule
