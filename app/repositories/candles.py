"""Candles in bulk: COPY in, arrays out. Row-at-a-time ORM would be far too slow for a year of
1-minute bars (525,600 rows)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

CandleTuple = tuple[int, float, float, float, float, float]  # open_time ms UTC, o, h, l, c, v


def insert(session: Session, symbol: str, timeframe: str, rows: Iterable[CandleTuple], source: str) -> int:
    """Insert bars, skipping ones already stored (idempotent). Returns how many were new.
    Runs inside the caller's transaction, so a failure keeps nothing."""
    conn = session.connection().connection.driver_connection
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candle_import "
            "(open_time timestamptz, open float8, high float8, low float8, close float8, volume float8) "
            "ON COMMIT DROP"
        )
        cur.execute("TRUNCATE candle_import")
        with cur.copy("COPY candle_import FROM STDIN") as copy:
            for t, o, h, low, c, v in rows:
                copy.write_row((datetime.fromtimestamp(t / 1000, UTC), o, h, low, c, v))
        cur.execute(
            "INSERT INTO candles (symbol, timeframe, open_time, open, high, low, close, volume, source) "
            "SELECT %s, %s, open_time, open, high, low, close, volume, %s FROM candle_import "
            "ON CONFLICT (symbol, timeframe, open_time) DO NOTHING",
            (symbol, timeframe, source),
        )
        return cur.rowcount


def load(
    session: Session, symbol: str, timeframe: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, np.ndarray]:
    """Bars in [start, end) ordered by time, as arrays: open_time (int64 ms), open..volume."""
    conn = session.connection().connection.driver_connection
    sql = (
        "SELECT (extract(epoch FROM open_time) * 1000)::int8, open, high, low, close, volume FROM candles "
        "WHERE symbol = %s AND timeframe = %s AND open_time >= %s AND open_time < %s ORDER BY open_time"
    )
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(sql, (symbol, timeframe, lo, hi))
        rows = cur.fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return {
        "open_time": data[:, 0].astype(np.int64),
        "open": data[:, 1].copy(),
        "high": data[:, 2].copy(),
        "low": data[:, 3].copy(),
        "close": data[:, 4].copy(),
        "volume": data[:, 5].copy(),
    }


def sources(session: Session, symbol: str, timeframe: str) -> list[str]:
    rows = session.execute(
        text("SELECT DISTINCT source FROM candles WHERE symbol = :s AND timeframe = :t"), {"s": symbol, "t": timeframe}
    )
    return [r[0] for r in rows]


def coverage(session: Session) -> list[tuple[str, str, str, int, datetime, datetime]]:
    rows = session.execute(
        text(
            "SELECT symbol, timeframe, string_agg(DISTINCT source, ','), count(*), min(open_time), max(open_time) "
            "FROM candles GROUP BY symbol, timeframe ORDER BY symbol, timeframe"
        )
    )
    return [tuple(r) for r in rows]


@dataclass(frozen=True)
class Coverage:
    """What is stored for one symbol at one timeframe: all of it, and inside a range."""

    timeframe: str
    total: int
    first: datetime | None
    last: datetime | None
    in_range: int  # bars stored inside the range
    buckets_in_range: int  # distinct `bucket_ms` buckets those bars fall in (bars after resampling)


def coverage_of(
    session: Session, symbol: str, start: datetime | None, end: datetime | None, bucket_ms: int
) -> dict[str, Coverage]:
    """Per stored timeframe of `symbol`, in one query on the primary key's leading column."""
    in_range = "open_time >= :lo AND open_time < :hi"
    rows = session.execute(
        text(
            "SELECT timeframe, count(*), min(open_time), max(open_time), "
            f"count(*) FILTER (WHERE {in_range}), "
            "count(DISTINCT floor(extract(epoch FROM open_time) * 1000 / :bucket)) "
            f"FILTER (WHERE {in_range}) "
            "FROM candles WHERE symbol = :symbol GROUP BY timeframe ORDER BY timeframe"
        ),
        {
            "symbol": symbol,
            "lo": start or datetime(1970, 1, 1, tzinfo=UTC),
            "hi": end or datetime(9999, 1, 1, tzinfo=UTC),
            "bucket": bucket_ms,
        },
    )
    return {r[0]: Coverage(*r) for r in rows}
