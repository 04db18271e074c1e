"""Candle data: import from CSV, generate synthetic bars, and load bars for a training job."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy.orm import Session

from app.engine import candles as engine_candles
from app.engine.csv_import import parse_csv
from app.engine.pipeline import MIN_BARS
from app.repositories import candles as candles_repo


@dataclass(frozen=True)
class ImportReport:
    rows: int
    inserted: int


def import_csv(session: Session, symbol: str, timeframe: str, lines: Iterable[str]) -> ImportReport:
    """Parse the whole file first (a bad row raises CandleParseError with its line number and
    nothing is written), then insert in the caller's transaction. Re-importing adds nothing."""
    rows = parse_csv(lines)
    tuples = [(r.open_time, r.open, r.high, r.low, r.close, r.volume) for r in rows]
    inserted = candles_repo.insert(session, symbol, timeframe, tuples, source="import")
    return ImportReport(rows=len(tuples), inserted=inserted)


def generate_synthetic(
    session: Session, symbol: str, timeframe: str, bars: int, seed: int, start_ms: int | None = None
) -> ImportReport:
    """Seeded synthetic bars, stored with source='synthetic' so they are never mistaken for market data."""
    kwargs = {"start_ms": start_ms} if start_ms is not None else {}
    c = engine_candles.synthetic(bars, seed, timeframe=timeframe, **kwargs)
    tuples = zip(
        c.open_time.tolist(),
        c.open.tolist(),
        c.high.tolist(),
        c.low.tolist(),
        c.close.tolist(),
        c.volume.tolist(),
        strict=True,
    )
    inserted = candles_repo.insert(session, symbol, timeframe, tuples, source=engine_candles.SYNTHETIC_SOURCE)
    return ImportReport(rows=bars, inserted=inserted)


def load(
    session: Session,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    *,
    chunk_bars: int = 50_000,
    between_chunks: Callable[[], None] = lambda: None,
) -> engine_candles.Candles | None:
    """Bars for a job: stored at `timeframe`, or resampled from stored 1m bars. None if there are none.
    `between_chunks` runs every `chunk_bars` bars read (a job's stop check)."""
    stream = {"chunk_bars": chunk_bars, "between_chunks": between_chunks}
    arrays = candles_repo.load(session, symbol, timeframe, start, end, **stream)
    if len(arrays["open_time"]):
        return engine_candles.Candles(timeframe=timeframe, **arrays)
    if timeframe == "1m":
        return None
    base = candles_repo.load(session, symbol, "1m", start, end, **stream)
    if not len(base["open_time"]):
        return None
    between_chunks()
    return engine_candles.resample(engine_candles.Candles(timeframe="1m", **base), timeframe)


@dataclass(frozen=True)
class RequestCheck:
    """What the start path learns about a training job's candles, in one query."""

    problem: tuple[str, str] | None  # (message, field) when the job could not get enough bars
    bars_to_load: int  # stored bars the job would read, counted only up to `max_bars` + 1
    revision: int = 0  # the candle revision it was made at (`CandleRevision`)


def coverage_problem(session: Session, params: dict[str, Any]) -> tuple[str, str] | None:
    """Why a training job with these parameters could not get enough bars, as (message, field),
    or None."""
    return check_request(session, params, max_bars=0).problem


def check_request(session: Session, params: dict[str, Any], *, max_bars: int) -> RequestCheck:
    """Mirrors `load` (stored bars at the timeframe, else resampled 1m bars) and the engine's
    minimum; the job process checks again, as data can change after submit. Also counts the
    bars `load` would read, up to `max_bars` + 1 (enough to tell whether the bound is passed)."""
    found = candles_repo.coverage_of(session, _coverage_params(params, max_bars))
    return _check(found, params)


async def check_request_from_loop(conn: AsyncConnection, params: dict[str, Any], *, max_bars: int) -> RequestCheck:
    """`check_request` on a connection of the event loop (the API's start)."""
    found = await candles_repo.coverage_from_loop(conn, _coverage_params(params, max_bars))
    return _check(found, params)


class KeptChecks:
    """The API's candle checks that passed, by request, each with the candle revision it was made
    at (at most `size`, the least recently used dropped first). A start on a kept check skips the
    check's query (it counts the bars a job would load, so it grows with the range: figures in
    docs/benchmarks.md) and is admitted only while that revision is still the
    current one: the admitting insert compares it under the admission lock, so a change of
    candles since (an import, a delete) sends the start back to a fresh check. Only checks that
    found no problem are kept: a refusal is always made on current data."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._checks: OrderedDict[tuple, RequestCheck] = OrderedDict()

    @staticmethod
    def key(params: dict[str, Any], max_bars: int) -> tuple:
        return (params["symbol"], params["timeframe"], params.get("start"), params.get("end"), max_bars)

    def get(self, key: tuple) -> RequestCheck | None:
        check = self._checks.get(key)
        if check is not None:
            self._checks.move_to_end(key)
        return check

    def keep(self, key: tuple, check: RequestCheck) -> None:
        self._checks[key] = check
        self._checks.move_to_end(key)
        while len(self._checks) > self._size:
            self._checks.popitem(last=False)

    def drop(self, key: tuple) -> None:
        self._checks.pop(key, None)


def _coverage_params(params: dict[str, Any], max_bars: int) -> dict:
    timeframe = params["timeframe"]
    return candles_repo.coverage_params(
        params["symbol"],
        timeframe,
        _time(params.get("start")),
        _time(params.get("end")),
        step_ms=engine_candles.TIMEFRAMES[timeframe],
        timeframes=list(engine_candles.TIMEFRAMES),
        cap=MIN_BARS,
        count_up_to=max_bars + 1,
    )


def _check(found: candles_repo.Coverage, params: dict[str, Any]) -> RequestCheck:
    problem = _problem(found, params["symbol"], params["timeframe"], _time(params.get("start")))
    return RequestCheck(problem, found.bars_to_load, found.revision)


def _problem(
    found: candles_repo.Coverage, symbol: str, timeframe: str, start: datetime | None
) -> tuple[str, str] | None:
    if not found.stored:
        return f"no candles stored for {symbol}; import some with `trad candles import`", "symbol"
    have = "; ".join(f"{tf} from {_utc(first)} to {_utc(last)}" for tf, (first, last) in found.stored.items())
    if timeframe not in found.stored and "1m" not in found.stored:
        return f"no {symbol} candles at {timeframe} or at 1m to resample from; stored: {have}", "timeframe"
    bars = found.own_bars or (found.resampled_bars if timeframe != "1m" else 0)
    if bars == 0:
        field = "start" if start is not None else "end"
        return f"no {symbol} {timeframe} candles in the requested range; stored: {have}", field
    if bars < MIN_BARS:
        return (
            f"{bars} {timeframe} bars of {symbol} in the requested range is too few to train on "
            f"(need {MIN_BARS}); stored: {have}",
            "timeframe",
        )
    return None


def _utc(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%MZ}" if value else "?"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def bars_to_load(session: Session, symbol: str, timeframe: str, start: datetime | None, end: datetime | None) -> int:
    """How many stored bars `load` would read: those at `timeframe`, else the 1m bars it resamples."""
    stored = candles_repo.count(session, symbol, timeframe, start, end)
    if stored or timeframe == "1m":
        return stored
    return candles_repo.count(session, symbol, "1m", start, end)
