"""Candle data: import from CSV, generate synthetic bars, and load bars for a training job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.engine import candles as engine_candles
from app.engine.csv_import import parse_csv
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


def bars_to_load(session: Session, symbol: str, timeframe: str, start: datetime | None, end: datetime | None) -> int:
    """How many stored bars `load` would read: those at `timeframe`, else the 1m bars it resamples."""
    stored = candles_repo.count(session, symbol, timeframe, start, end)
    if stored or timeframe == "1m":
        return stored
    return candles_repo.count(session, symbol, "1m", start, end)
