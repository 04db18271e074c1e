"""Parse candle CSV files. The first non-blank line decides the layout:

- a header naming the columns, in any case and any order: one time column (`timestamp`, `time`,
  `date`, `datetime` or `open_time`, or an unnamed first column, as pandas writes a DatetimeIndex),
  `open`, `high`, `low`, `close`, and `volume` unless the file has none (then volume is 0);
- an exchange kline dump: 12 columns, without a header or with its `open_time,…,ignore` one.

A time is an ISO-8601 date or datetime (naive means UTC; an offset is converted to UTC) or a
whole epoch number whose unit its magnitude tells: below 10**11 seconds, below 10**14
milliseconds, below 10**17 microseconds, below 10**20 nanoseconds. Each unit is read right for
times from 1973-03-03 to the year 5138. The whole file is checked before the caller writes
anything; an error names its line and what was expected there."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

TIME_NAMES = ("timestamp", "time", "date", "datetime", "open_time")
PRICE_NAMES = ("open", "high", "low", "close")
KLINE_HEADER = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]
KLINE_COLUMNS = len(KLINE_HEADER)
EXPECTED_HEADER = (
    "expected a header naming a time column (timestamp, time, date, datetime or open_time, or an unnamed "
    f"first column), open, high, low, close and optionally volume, or {KLINE_COLUMNS} kline columns"
)
EXPECTED_TIME = "an ISO-8601 date or datetime, or epoch seconds/ms/µs/ns"
# Epoch numbers below each bound are in that unit; the value gives milliseconds.
EPOCH_UNITS = ((10**11, lambda v: v * 1000), (10**14, lambda v: v), (10**17, lambda v: v // 1000))
EPOCH_MAX = 10**20  # nanoseconds below this
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


class CandleParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


@dataclass(frozen=True)
class CandleRow:
    open_time: int  # ms since the epoch, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Layout:
    """Where each value sits in a row, and what the time column is called in messages."""

    columns: int
    time: int
    open: int
    high: int
    low: int
    close: int
    volume: int | None
    time_name: str = "timestamp"
    from_header: bool = True


KLINE = Layout(KLINE_COLUMNS, 0, 1, 2, 3, 4, 5, "open_time", from_header=False)


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CandleParseError(line, f"{column} is not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CandleParseError(line, f"{column} is not a finite number: {text!r}")
    return value


def _timestamp(text: str, line: int, column: str = "timestamp") -> int:
    if not text:
        raise CandleParseError(line, f"{column} is empty: expected {EXPECTED_TIME}")
    if text.isascii() and text.isdigit():
        value = int(text)
        for bound, to_ms in EPOCH_UNITS:
            if value < bound:
                return to_ms(value)
        if value < EPOCH_MAX:
            return value // 1_000_000
        raise CandleParseError(line, f"{column} is too large for an epoch number in any unit: {text!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CandleParseError(line, f"{column} is not {EXPECTED_TIME}: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - EPOCH) // MS


def _header(fields: list[str], line: int) -> Layout:
    """The layout a header names; an error for a header that is not one of ours."""
    names = [f.lower() for f in fields]
    if names == KLINE_HEADER:
        return replace(KLINE, from_header=True)
    time: int | None = None
    where: dict[str, int] = {}
    for i, (raw, name) in enumerate(zip(fields, names, strict=True)):
        if name in TIME_NAMES or (i == 0 and name == ""):
            if time is not None:
                raise CandleParseError(line, f"two time columns, {fields[time]!r} and {raw!r}: keep one")
            time = i
        elif name in (*PRICE_NAMES, "volume"):
            if name in where:
                raise CandleParseError(line, f"column {name!r} appears twice")
            where[name] = i
        elif name == "":
            raise CandleParseError(line, f"column {i + 1} has no name; {EXPECTED_HEADER}")
        else:
            raise CandleParseError(line, f"unknown column {raw!r}; {EXPECTED_HEADER}")
    if time is None:
        raise CandleParseError(line, f"no time column; {EXPECTED_HEADER}")
    for name in PRICE_NAMES:
        if name not in where:
            raise CandleParseError(line, f"no {name!r} column; {EXPECTED_HEADER}")
    return Layout(
        len(fields),
        time,
        where["open"],
        where["high"],
        where["low"],
        where["close"],
        where.get("volume"),
        names[time] or "time",
    )


def _layout(fields: list[str], line: int) -> Layout:
    """The layout of a file from its first line: a header, or the first row of a kline dump."""
    first = fields[0]
    if len(fields) == 1 and (separator := next((c for c in ";\t|" if c in first), None)):
        raise CandleParseError(line, f"columns must be separated by commas, not {separator!r}")
    if first.isascii() and first.isdigit():
        if len(fields) == KLINE_COLUMNS:
            return KLINE
        raise CandleParseError(line, f"{EXPECTED_HEADER}; got a row of {len(fields)} columns and no header")
    try:
        _timestamp(first, line)
    except CandleParseError:
        return _header(fields, line)
    raise CandleParseError(line, f"{EXPECTED_HEADER}; got a row of {len(fields)} columns and no header")


def _row(fields: list[str], line: int, layout: Layout) -> CandleRow:
    t = _timestamp(fields[layout.time], line, layout.time_name)
    o, h, low, c = (
        _number(fields[i], line, n)
        for i, n in zip((layout.open, layout.high, layout.low, layout.close), PRICE_NAMES, strict=True)
    )
    v = 0.0 if layout.volume is None else _number(fields[layout.volume], line, "volume")
    if h < low:
        raise CandleParseError(line, f"high {h} is below low {low}")
    if not (low <= o <= h and low <= c <= h):
        raise CandleParseError(line, "open and close must lie between low and high")
    if min(o, h, low, c) <= 0:
        raise CandleParseError(line, "prices must be positive")
    if v < 0:
        raise CandleParseError(line, f"volume is negative: {v}")
    return CandleRow(t, o, h, low, c, v)


def parse_csv(lines: Iterable[str]) -> list[CandleRow]:
    rows: list[CandleRow] = []
    seen: dict[int, int] = {}
    layout: Layout | None = None
    reader = csv.reader(lines)
    for fields in reader:
        number = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        fields = [f.strip() for f in fields]
        if layout is None:
            fields[0] = fields[0].removeprefix("\ufeff").strip()
            layout = _layout(fields, number)
            if layout.from_header:
                continue
        if len(fields) != layout.columns:
            where = " as in the header" if layout.from_header else ""
            raise CandleParseError(number, f"expected {layout.columns} columns{where}, got {len(fields)}")
        row = _row(fields, number, layout)
        if row.open_time in seen:
            raise CandleParseError(number, f"duplicate timestamp (first on line {seen[row.open_time]})")
        seen[row.open_time] = number
        rows.append(row)
    if not rows:
        raise CandleParseError(1, "no candles in file")
    rows.sort(key=lambda r: r.open_time)
    return rows
