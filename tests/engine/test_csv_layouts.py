"""The CSV layouts people have: any-case header names, pandas' unnamed date index, ISO dates and
datetimes, epoch numbers in any unit, no volume column, exchange kline dumps with or without a
header. Random bars written in each layout read back as the same bars; anything else is an
error naming its line and what was expected."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.csv_import import CandleParseError, CandleRow, parse_csv
from tests.support import ROOT

DATA = ROOT / "tests" / "data"
# Epoch numbers are unambiguous in every unit from 1973-03-03 (10**11 ms) to 5138 (10**11 s).
MIN_MS = 100_000_000_000
MAX_MS = 7_258_118_400_000  # 2200-01-01
DAY_MS = 86_400_000
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)


def _iso(ms: int, sep: str = "T", tz: timezone | None = None, suffix: str = "") -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if tz is not None:
        moment = moment.astimezone(tz)
    text = moment.isoformat(sep=sep, timespec="milliseconds")
    return text.removesuffix("+00:00") + suffix if tz is None else text


def _prices(r: CandleRow) -> str:
    return f"{r.open!r},{r.high!r},{r.low!r},{r.close!r}"


def _kline(r: CandleRow, scale: int) -> str:
    t = r.open_time * scale
    return f"{t},{_prices(r)},{r.volume!r},{t + 60_000 * scale - 1},1.5,7,0.5,0.75,0"


# name → (bar time resolution in ms, writer). Each writer renders the bars as a file would hold them.
LAYOUTS: dict[str, tuple[int, Callable[[list[CandleRow]], str]]] = {
    "generic lower case, epoch ms": (
        1,
        lambda rows: (
            "timestamp,open,high,low,close,volume\n"
            + "".join(f"{r.open_time},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "capitalised, ISO with Z": (
        1,
        lambda rows: (
            "Timestamp,Open,High,Low,Close,Volume\n"
            + "".join(f"{_iso(r.open_time, suffix='Z')},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "pandas unnamed index, naive datetime": (
        1000,
        lambda rows: (
            ",Open,High,Low,Close,Volume\n"
            + "".join(f"{_iso(r.open_time, ' ')[:19]},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "pandas unnamed index, ISO date": (
        DAY_MS,
        lambda rows: (
            ",Open,High,Low,Close,Volume\n"
            + "".join(f"{_iso(r.open_time)[:10]},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "Date, offset +02:00": (
        1,
        lambda rows: (
            "Date,Open,High,Low,Close,Volume\n"
            + "".join(f"{_iso(r.open_time, tz=timezone(timedelta(hours=2)))},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "TIME, epoch seconds": (
        1000,
        lambda rows: (
            "TIME,OPEN,HIGH,LOW,CLOSE,VOLUME\n"
            + "".join(f"{r.open_time // 1000},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "datetime, epoch µs": (
        1,
        lambda rows: (
            "datetime,open,high,low,close,volume\n"
            + "".join(f"{r.open_time * 1000},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "open_time, epoch ns": (
        1,
        lambda rows: (
            "open_time,open,high,low,close,volume\n"
            + "".join(f"{r.open_time * 1_000_000},{_prices(r)},{r.volume!r}\n" for r in rows)
        ),
    ),
    "columns in another order": (
        1,
        lambda rows: (
            "Close,Volume,Low,High,Open,Date\n"
            + "".join(
                f"{r.close!r},{r.volume!r},{r.low!r},{r.high!r},{r.open!r},{_iso(r.open_time, suffix='Z')}\n"
                for r in rows
            )
        ),
    ),
    "kline dump, ms": (1, lambda rows: "".join(_kline(r, 1) + "\n" for r in rows)),
    "kline dump, µs": (1, lambda rows: "".join(_kline(r, 1000) + "\n" for r in rows)),
    "kline dump with its header": (1, lambda rows: KLINE_HEADER + "\n" + "".join(_kline(r, 1) + "\n" for r in rows)),
}

price = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def bars(draw, resolution: int) -> list[CandleRow]:
    times = draw(
        st.lists(st.integers(MIN_MS // resolution + 1, MAX_MS // resolution), min_size=1, max_size=30, unique=True)
    )
    rows = []
    for t in sorted(times):
        low, a, b, high = sorted(draw(st.lists(price, min_size=4, max_size=4)))
        open_, close = (a, b) if draw(st.booleans()) else (b, a)
        volume = draw(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
        rows.append(CandleRow(t * resolution, open_, high, low, close, volume))
    return rows


@pytest.mark.parametrize("layout", list(LAYOUTS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_bars_round_trip_through_each_layout(layout, data):
    resolution, write = LAYOUTS[layout]
    rows = data.draw(bars(resolution))
    assert parse_csv(write(rows).splitlines()) == rows


@settings(max_examples=40, deadline=None)
@given(rows=bars(1))
def test_a_file_without_volume_reads_as_zero_volume(rows):
    text = "Date,Open,High,Low,Close\n" + "".join(f"{r.open_time},{_prices(r)}\n" for r in rows)
    assert parse_csv(text.splitlines()) == [CandleRow(r.open_time, r.open, r.high, r.low, r.close, 0.0) for r in rows]


@pytest.mark.parametrize(
    ("name", "bars", "first", "last"),
    [
        ("goog_layout.csv", 300, "2004-08-19T00:00:00+00:00", "2005-10-12T00:00:00+00:00"),
        ("eurusd_layout.csv", 500, "2017-04-19T09:00:00+00:00", "2017-05-18T04:00:00+00:00"),
    ],
)
def test_files_in_backtesting_py_layouts_read_unchanged(name, bars, first, last):
    rows = parse_csv((DATA / name).read_text().splitlines())
    assert len(rows) == bars
    assert datetime.fromtimestamp(rows[0].open_time / 1000, UTC).isoformat() == first
    assert datetime.fromtimestamp(rows[-1].open_time / 1000, UTC).isoformat() == last


def test_a_byte_order_mark_before_the_header_is_ignored():
    rows = parse_csv(["\ufeffDate,Open,High,Low,Close,Volume", "2024-01-01,1,2,0.5,1.5,3"])
    assert rows == [CandleRow(1704067200000, 1.0, 2.0, 0.5, 1.5, 3.0)]


HEADER = "Date,Open,High,Low,Close,Volume\n"
ROW = "2024-01-01,1,2,0.5,1.5,3\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Date,Open,High,Low,Close,Adj Close,Volume\n" + ROW, 1, r"unknown column 'Adj Close'.*expected"),
        ("Date,Open,High,Close,Volume\n" + ROW, 1, "no 'low' column"),
        ("Open,High,Low,Close,Volume\n1,2,0.5,1.5,3\n", 1, "no time column.*timestamp, time, date"),
        ("Date,Time,Open,High,Low,Close\n" + ROW, 1, "two time columns"),
        ("Date,Open,open,High,Low,Close\n" + ROW, 1, "column 'open' appears twice"),
        ("Date,Open,,High,Low,Close\n" + ROW, 1, "column 3 has no name"),
        ("2024-01-01,1,2,0.5,1.5,3\n", 1, "expected a header"),
        ("Date;Open;High;Low;Close\n2024-01-01;1;2;0.5;1.5\n", 1, "separated by commas, not ';'"),
        (HEADER + ROW + "2024-01-02,1,2,0.5\n", 3, "expected 6 columns as in the header, got 4"),
        (HEADER + ROW + "01/02/2024,1,2,0.5,1.5,3\n", 3, "date is not an ISO-8601 date or datetime, or epoch"),
        (HEADER + ROW + ",1,2,0.5,1.5,3\n", 3, "date is empty"),
        (HEADER + ROW + "-1704067200,1,2,0.5,1.5,3\n", 3, "date is not an ISO-8601"),
        (HEADER + ROW + "2024-01-02,1,2,0.5,x,3\n", 3, "close is not a number"),
        (HEADER + ROW + "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n", 3, "duplicate timestamp"),
        (HEADER + "\n" + ROW + "2024-01-02,1,2,0.5,3,3\n", 4, "open and close must lie between low and high"),
        ("Date,Open,High,Low,Close\n" + "2024-01-01,1,2,0.5,1.5,3\n", 2, "expected 5 columns as in the header, got 6"),
    ],
)
def test_anything_else_is_an_error_naming_its_line(text, line, message):
    with pytest.raises(CandleParseError, match=message) as info:
        parse_csv(text.splitlines())
    assert info.value.line == line
