"""Candles in bulk: COPY in, arrays out. Row-at-a-time ORM would be far too slow for a year of
1-minute bars (525,600 rows)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.repositories.compiled import compile_statement

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


# One row of `COPY (SELECT open_time ms, o, h, l, c, v) TO STDOUT (FORMAT binary)`: a field
# count, then per field its length and big-endian value. Parsed in place by NumPy, so a year of
# 1-minute bars never exists as Python objects.
_COLUMNS = (("t", ">i8"), ("o", ">f8"), ("h", ">f8"), ("l", ">f8"), ("c", ">f8"), ("v", ">f8"))
_ROW = np.dtype([("n", ">i2"), *[x for name, kind in _COLUMNS for x in ((f"len_{name}", ">i4"), (name, kind))]])
_HEADER = 19  # signature (11) + flags (4) + header extension length (4, always 0 here)
_FIELDS = ("open_time", "open", "high", "low", "close", "volume")


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    return start or datetime(1970, 1, 1, tzinfo=UTC), end or datetime(9999, 1, 1, tzinfo=UTC)


def count(session: Session, symbol: str, timeframe: str, start: datetime | None, end: datetime | None) -> int:
    lo, hi = _range(start, end)
    return session.execute(
        text(
            "SELECT count(*) FROM candles WHERE symbol = :s AND timeframe = :t AND open_time >= :lo AND open_time < :hi"
        ),
        {"s": symbol, "t": timeframe, "lo": lo, "hi": hi},
    ).scalar_one()


def load(
    session: Session,
    symbol: str,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    chunk_bars: int = 50_000,
    between_chunks: Callable[[], None] = lambda: None,
) -> dict[str, np.ndarray]:
    """Bars in [start, end) ordered by time, as arrays: open_time (int64 ms), open..volume.
    Streamed with binary COPY into preallocated arrays; `between_chunks` is called every
    `chunk_bars` bars (a job's stop check: raising there cancels the COPY)."""
    lo, hi = _range(start, end)
    out = {
        f: np.empty(count(session, symbol, timeframe, start, end), np.int64 if f == "open_time" else np.float64)
        for f in _FIELDS
    }
    filled, pending = 0, bytearray()
    conn = session.connection().connection.driver_connection
    sql = (
        "COPY (SELECT (extract(epoch FROM open_time) * 1000)::int8, open, high, low, close, volume FROM candles "
        "WHERE symbol = %s AND timeframe = %s AND open_time >= %s AND open_time < %s ORDER BY open_time) "
        "TO STDOUT (FORMAT binary)"
    )
    with conn.cursor() as cur, cur.copy(sql, (symbol, timeframe, lo, hi)) as copy:
        skip = _HEADER
        for block in copy:
            pending += block
            if skip:
                del pending[:skip]
                skip = 0
            if len(pending) >= chunk_bars * _ROW.itemsize:
                filled = _take(out, pending, filled)
                between_chunks()
    if pending[-2:] == b"\xff\xff":  # the trailer: a field count of -1
        del pending[-2:]
    filled = _take(out, pending, filled)
    return {f: a[:filled] for f, a in out.items()}


def _take(out: dict[str, np.ndarray], pending: bytearray, filled: int) -> int:
    """Move the whole rows at the front of `pending` into `out` (grown if rows were added since
    they were counted); return the new fill level."""
    n = len(pending) // _ROW.itemsize
    if not n:
        return filled
    rows = np.frombuffer(bytes(pending[: n * _ROW.itemsize]), dtype=_ROW)
    del pending[: n * _ROW.itemsize]
    for f in _FIELDS:
        if filled + n > len(out[f]):
            out[f] = np.resize(out[f], filled + n)
    for f, c in zip(_FIELDS, (name for name, _ in _COLUMNS), strict=True):
        out[f][filled : filled + n] = rows[c]
    return filled + n


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
    """What a job's candle request would find, capped at `cap` bars (all that matters is
    whether there are enough), and what is stored for the symbol at each timeframe."""

    stored: dict[str, tuple[datetime, datetime]]  # timeframe -> first and last bar
    own_bars: int  # bars stored at the timeframe inside the range
    resampled_bars: int  # distinct timeframe buckets among the 1m bars in range (0 when own_bars > 0)
    bars_to_load: int  # bars a job would read (at the timeframe, else 1m), counted up to `count_up_to`
    revision: int  # the candle revision (`CandleRevision`) the query saw, in the same snapshot


_COVERAGE = text(
    """
WITH RECURSIVE bucket(t, n) AS (
    (SELECT open_time, 1 FROM candles
     WHERE symbol = :symbol AND timeframe = '1m' AND open_time >= :lo AND open_time < :hi
     ORDER BY open_time LIMIT 1)
    UNION ALL
    SELECT (SELECT c.open_time FROM candles c
            WHERE c.symbol = :symbol AND c.timeframe = '1m' AND c.open_time < :hi
              AND c.open_time >= to_timestamp(
                  ((floor(extract(epoch FROM bucket.t) * 1000 / :step) + 1) * :step / 1000)::float8)
            ORDER BY c.open_time LIMIT 1),
           n + 1
    FROM bucket WHERE bucket.t IS NOT NULL AND n < :cap
),
stored AS (
    SELECT tf,
           (SELECT min(open_time) FROM candles WHERE symbol = :symbol AND timeframe = tf) AS first,
           (SELECT max(open_time) FROM candles WHERE symbol = :symbol AND timeframe = tf) AS last
    FROM unnest(CAST(:timeframes AS text[])) AS tf
)
SELECT tf, first, last,
       (SELECT count(*) FROM (SELECT 1 FROM candles
                              WHERE symbol = :symbol AND timeframe = :timeframe
                                AND open_time >= :lo AND open_time < :hi LIMIT :count_up_to) own),
       CASE WHEN EXISTS (SELECT 1 FROM candles
                         WHERE symbol = :symbol AND timeframe = :timeframe
                           AND open_time >= :lo AND open_time < :hi)
            THEN 0  -- bars stored at the timeframe: nothing is resampled, the walk is skipped
            ELSE (SELECT count(t) FROM bucket) END,
       (SELECT count(*) FROM (SELECT 1 FROM candles
                              WHERE symbol = :symbol AND timeframe = '1m' AND :timeframe <> '1m'
                                AND open_time >= :lo AND open_time < :hi
                                AND NOT EXISTS (SELECT 1 FROM candles
                                                WHERE symbol = :symbol AND timeframe = :timeframe
                                                  AND open_time >= :lo AND open_time < :hi)
                              LIMIT :count_up_to) base),
       COALESCE((SELECT revision FROM candle_revision WHERE id = 1), 0)
FROM stored
"""
)


def coverage_params(
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    *,
    step_ms: int,
    timeframes: list[str],
    cap: int,
    count_up_to: int = 0,
) -> dict:
    """The parameters of the coverage query (`coverage_of`, `coverage_from_loop`): first/last bar
    per timeframe, bars in range at `timeframe`, and 1m buckets of `step_ms` in range, counted by
    jumping from one bucket to the next (at most `cap` index probes), and the bars a job would
    load, counted up to `count_up_to` (at least `cap`)."""
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "timeframes": timeframes,
        "lo": start or datetime(1970, 1, 1, tzinfo=UTC),
        "hi": end or datetime(9999, 1, 1, tzinfo=UTC),
        "step": step_ms,
        "cap": cap,
        "count_up_to": max(count_up_to, cap),
    }


def coverage_of(session: Session, params: dict) -> Coverage:
    """One query (`coverage_params`), every part of it a walk of the primary key (symbol,
    timeframe, open_time)."""
    return _coverage(session.execute(_COVERAGE, params).all(), params["cap"])


_COVERAGE_SQL = compile_statement(_COVERAGE)


async def coverage_from_loop(conn: AsyncConnection, params: dict) -> Coverage:
    """`coverage_of`, sent by the driver on a connection of the event loop (the start path)."""
    async with conn.cursor(row_factory=tuple_row) as cursor:  # its columns are not all named
        await cursor.execute(_COVERAGE_SQL.sql, _COVERAGE_SQL.params(**params))
        return _coverage(await cursor.fetchall(), params["cap"])


def _coverage(rows, cap: int) -> Coverage:
    own, resampled, base, revision = rows[0][3:7] if rows else (0, 0, 0, 0)
    return Coverage(
        stored={r[0]: (r[1], r[2]) for r in rows if r[1] is not None},
        own_bars=min(own, cap),
        resampled_bars=resampled,
        bars_to_load=own or base,
        revision=revision,
    )


@dataclass(frozen=True)
class Span:
    """What is stored for one symbol and timeframe: first and last open time (ms), and the
    sources of those two bars (two walks of the primary key, however many bars are stored)."""

    first_ms: int | None
    last_ms: int | None
    sources: tuple[str, ...]


_END_BAR = (
    "SELECT (extract(epoch FROM open_time) * 1000)::int8, source FROM candles "
    "WHERE symbol = :s AND timeframe = :t ORDER BY open_time {} LIMIT 1"
)


def span(session: Session, symbol: str, timeframe: str) -> Span:
    ends = [
        session.execute(text(_END_BAR.format(order)), {"s": symbol, "t": timeframe}).first()
        for order in ("ASC", "DESC")
    ]
    if ends[0] is None:
        return Span(None, None, ())
    return Span(ends[0][0], ends[1][0], tuple(sorted({ends[0][1], ends[1][1]})))


def last_open_before(session: Session, symbol: str, timeframe: str, before: datetime) -> datetime | None:
    """The open time of the last stored bar that opened before `before` (one walk of the key)."""
    return session.execute(
        text("SELECT max(open_time) FROM candles WHERE symbol = :s AND timeframe = :t AND open_time < :before"),
        {"s": symbol, "t": timeframe, "before": before},
    ).scalar()


def last_refreshes(session: Session) -> dict[tuple[str, str], datetime]:
    """When a `candles_refresh` job last succeeded, per stored symbol and timeframe."""
    rows = session.execute(
        text(
            "SELECT params->>'as', params->>'timeframe', max(finished_at) FROM training_jobs "
            "WHERE kind = 'candles_refresh' AND status = 'succeeded' GROUP BY 1, 2"
        )
    )
    return {(symbol, timeframe): at for symbol, timeframe, at in rows}
