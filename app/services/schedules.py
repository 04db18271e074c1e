"""Cron schedules of training jobs: what users do to them, and firing the due ones.

Firing runs in the maintenance pass (one process at a time, under its advisory lock). Each
tick acted on is a `schedule_fires` row, unique per (schedule, fire time), so a tick cannot be
fired twice whichever process, restart or clock jump tries; the job is started through the
same path as `POST /start` (admission, idempotency key derived from the tick, commit-then-send).

- Misfire: the latest due tick is older than `schedule_misfire_grace_s` (the service was
  down). `run_once` fires that one tick (one catch-up run, never a burst); `skip` fires none.
- Overlap: `skip` records the tick as skipped while a job of the schedule is queued or running;
  `queue` starts it anyway.
- Refresh: a template with `refresh` (`{"exchange": "binance", "symbol": "BTC/USDT"}`) starts a
  `candles_refresh` job instead, fetching the template's symbol and timeframe up to the fire
  time (the fire is `refreshing`). The transaction that marks that job succeeded starts the
  training job (`train_after_refresh`), its `end` just after the last bar stored before the
  fire time, and the fire becomes `started`: a crash between the two steps cannot happen, and
  the training job's dispatch is sent after that commit (or by the reconciler). A refresh that
  fails or is canceled turns the fire `refresh_failed` at the next maintenance pass
  (`fail_ended_refreshes`) and nothing is trained.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import cron
from app.clock import utcnow
from app.engine.candles import TIMEFRAMES
from app.models import Schedule, ScheduleFire
from app.repositories import candles as candles_repo
from app.repositories import schedules as schedules_repo
from app.services import candle_refresh
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
    if failed := schedules_repo.fail_ended_refreshes(session):
        log.warning("%d schedule fires failed: their candles refresh did not succeed", failed)
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
    refresh = params.pop("refresh", None)
    if schedule.lookback:
        params["start"] = _json_time(tick - cron.lookback(schedule.lookback))
        params["end"] = _json_time(tick)
    if refresh:
        return _fire_refresh(session, settings, schedule, fire, tick, refresh, priority, params)
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


def _fire_refresh(
    session: Session,
    settings: Settings,
    schedule: Schedule,
    fire: ScheduleFire,
    tick: datetime,
    refresh: dict[str, Any],
    priority: str,
    params: dict[str, Any],
) -> uuid.UUID | None:
    """Start the fire's candles refresh; its success starts the training job (`train_after_refresh`)."""
    until = _time(params.get("end")) or tick
    try:
        with session.begin_nested():
            refresh_params = candle_refresh.job_params(
                session,
                exchange=refresh["exchange"],
                symbol=refresh["symbol"],
                timeframe=params["timeframe"],
                since=_time(params.get("start")),
                until=min(until, tick),
                store_as=params["symbol"],
            )
            refresh_params["schedule"] = {
                "id": str(schedule.id),
                "fire_time": _json_time(tick),
                "priority": priority,
                "params": params,
            }
            result = candle_refresh.start(
                session, settings, refresh_params, priority=priority, idempotency_key=idempotency_key(schedule.id, tick)
            )
    except ServiceError as exc:  # bad refresh (e.g. nothing stored and no start) or queue full
        fire.outcome, fire.message = FireOutcome.REFUSED, f"candles refresh refused: {exc.message}"
        log.warning("schedule %s: tick %s refused: %s", schedule.name, tick.isoformat(), exc.message)
        return None
    fire.outcome, fire.refresh_job_id = FireOutcome.REFRESHING, result.row.id
    fire.message = f"refreshing {refresh['exchange']} {refresh['symbol']} first; the training job starts after it"
    log.info(
        "schedule %s fired for %s: refresh first", schedule.name, tick.isoformat(), extra={"job_id": str(result.row.id)}
    )
    return result.row.id if result.created else None


def train_after_refresh(session: Session, settings: Settings, refresh_job_id: uuid.UUID, fire_info: dict) -> None:
    """In the transaction that marks a fire's refresh job succeeded: start the fire's training
    job on the candles just stored, its `end` just after the last bar before the fire's `until`;
    the fire becomes `started` (or `refused`, queue full, or `refresh_failed`, no bar stored)."""
    fire = schedules_repo.fire_of_refresh(session, refresh_job_id)
    if fire is None or fire.outcome != FireOutcome.REFRESHING:
        log.info("refresh %s: its fire is gone or already settled; no training job", refresh_job_id)
        return
    params = dict(fire_info["params"])
    tick = _time(fire_info["fire_time"])
    until = min(_time(params.get("end")) or tick, tick)
    last = candles_repo.last_open_before(session, params["symbol"], params["timeframe"], until)
    if last is None:
        fire.outcome = FireOutcome.REFRESH_FAILED
        fire.message = (
            f"candles refresh job {refresh_job_id} stored no bar before {_json_time(until)}; nothing was trained"
        )
        return
    params["end"] = _json_time(last + timedelta(milliseconds=TIMEFRAMES[params["timeframe"]]))
    key = f"{idempotency_key(uuid.UUID(fire_info['id']), tick)}:train"
    try:
        with session.begin_nested():
            result = jobs_service.start(
                session, settings, kind="training", priority=fire_info["priority"], params=params, idempotency_key=key
            )
    except ServiceError as exc:
        fire.outcome = FireOutcome.REFUSED
        fire.message = f"candles refreshed by job {refresh_job_id}; the training job was refused: {exc.message}"
        return
    fire.outcome, fire.job_id = FireOutcome.STARTED, result.row.id
    fire.message = f"training on candles refreshed by job {refresh_job_id}, up to the bar of {_json_time(last)}"
    log.info("refresh succeeded; training job started", extra={"job_id": str(result.row.id)})


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


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
