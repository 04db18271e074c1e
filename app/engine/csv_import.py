"""Parse candle CSV files: a generic `timestamp,open,high,low,close,volume` layout with a header,
or the exchange kline dump layout (no header, 12 columns, open time in ms or µs). The whole
file is checked before the caller writes anything; an error names its line."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

GENERIC_HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
KLINE_COLUMNS = 12


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


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CandleParseError(line, f"{column} is not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CandleParseError(line, f"{column} is not a finite number: {text!r}")
    return value


def _timestamp(text: str, line: int) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        if value >= 10**15:  # microseconds
            return value // 1000
        if value >= 10**11:  # milliseconds
            return value
        return value * 1000  # seconds
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CandleParseError(line, f"timestamp is not ISO-8601 or epoch: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _row(fields: list[str], line: int) -> CandleRow:
    t = _timestamp(fields[0], line)
    o, h, low, c, v = (_number(fields[i], line, n) for i, n in enumerate(GENERIC_HEADER[1:], start=1))
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
    layout: str | None = None
    for number, fields in enumerate(csv.reader(lines), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        fields = [f.strip() for f in fields]
        if layout is None:
            if [f.lower() for f in fields] == GENERIC_HEADER:
                layout = "generic"
                continue
            if len(fields) == KLINE_COLUMNS:
                layout = "kline"
            else:
                raise CandleParseError(
                    number,
                    "expected a header 'timestamp,open,high,low,close,volume' "
                    f"or {KLINE_COLUMNS} kline columns, got {len(fields)} columns",
                )
        expected = len(GENERIC_HEADER) if layout == "generic" else KLINE_COLUMNS
        if len(fields) != expected:
            raise CandleParseError(number, f"expected {expected} columns, got {len(fields)}")
        row = _row(fields[:6], number)
        if row.open_time in seen:
            raise CandleParseError(number, f"duplicate timestamp (first on line {seen[row.open_time]})")
        seen[row.open_time] = number
        rows.append(row)
    if not rows:
        raise CandleParseError(1, "no candles in file")
    rows.sort(key=lambda r: r.open_time)
    return rows
