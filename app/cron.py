"""Cron expressions in an IANA timezone, and relative data windows ("90d"). One place that
knows croniter: validation, the next tick after an instant, the latest tick at or before one.
Instants in and out are UTC-aware; ticks are computed in the schedule's local time, so a
daily 09:00 in Europe/London is 09:00 UTC in winter and 08:00 UTC in summer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

LOOKBACK_PATTERN = r"^[1-9][0-9]{0,4}[mhdw]$"
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # any instant: a cron without a year repeats


def check_expression(expression: str) -> str:
    """The expression if croniter accepts it (5 fields, or 6 with seconds last) and some date
    matches it; ValueError otherwise. Each field can be in range and still no date match
    (`0 0 30 2 *`, 30 February): such an expression has no next tick, so one is computed."""
    if not isinstance(expression, str) or len(expression.split()) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(f"not a valid cron expression: {expression!r}")
    if not fires(expression):
        raise ValueError(f"cron expression never fires, no date matches it: {expression!r}")
    return expression


def fires(expression: str) -> bool:
    """Whether a (valid) expression has a tick at all."""
    try:
        croniter(expression, _EPOCH).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone: {name!r}") from None
    return name


def next_after(expression: str, timezone: str, instant: datetime) -> datetime:
    """The first tick strictly after `instant`."""
    zone = ZoneInfo(timezone)
    ticks = croniter(expression, instant.astimezone(zone))
    while True:
        tick = ticks.get_next(datetime).astimezone(UTC)
        if not _repeated(expression, zone, tick):
            return tick


def latest_at_or_before(expression: str, timezone: str, instant: datetime) -> datetime:
    """The last tick at or before `instant`."""
    zone = ZoneInfo(timezone)
    ticks = croniter(expression, instant.astimezone(zone))
    while True:
        previous = ticks.get_prev(datetime).astimezone(UTC)
        if not _repeated(expression, zone, previous):
            break
    following = next_after(expression, timezone, previous)
    return following if following <= instant else previous


def _repeated(expression: str, zone: ZoneInfo, tick: datetime) -> bool:
    """The second pass through a wall-clock time the autumn change repeats, for an expression
    with fixed hours: like cron, `30 1 * * *` runs once that night (an hourly or finer
    expression keeps its real-time rhythm)."""
    return tick.astimezone(zone).fold == 1 and expression.split()[1] != "*"


def lookback(text: str) -> timedelta:
    if not re.match(LOOKBACK_PATTERN, text):
        raise ValueError(f"lookback must look like 90d, 12h, 30m or 4w: {text!r}")
    return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})
