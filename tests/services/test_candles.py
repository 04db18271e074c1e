"""Loading a job's candles: binary COPY straight into arrays (checked against a plain SELECT),
the stop check between chunks, and the per-job bar cap at submit."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from app.models import Job
from app.repositories import candles as candles_repo
from app.services import candles as candles_service

MINUTE = 60_000
BASE_MS = 1_700_000_000_000
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


def reference(db, symbol, timeframe, start=None, end=None):
    """The plain row-at-a-time SELECT the binary COPY replaced."""
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    rows = db.execute(
        text(
            "SELECT (extract(epoch FROM open_time) * 1000)::int8, open, high, low, close, volume FROM candles "
            "WHERE symbol = :s AND timeframe = :t AND open_time >= :lo AND open_time < :hi ORDER BY open_time"
        ),
        {"s": symbol, "t": timeframe, "lo": lo, "hi": hi},
    ).all()
    return [tuple(r) for r in rows]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bars=st.lists(st.tuples(finite, finite, finite, finite, finite), min_size=0, max_size=300),
    gaps=st.lists(st.integers(1, 5), min_size=300, max_size=300),
    chunk=st.integers(100, 400),
    window=st.tuples(st.integers(-5, 400), st.integers(-5, 400)),
)
def test_binary_copy_load_equals_a_plain_select(db, bars, gaps, chunk, window):
    db.execute(text("TRUNCATE candles"))
    times = BASE_MS + MINUTE * np.cumsum(gaps[: len(bars)])
    rows = [(int(t), *b) for t, b in zip(times, bars, strict=True)]
    candles_repo.insert(db, "BTCUSDT", "1m", rows, source="test")
    start, end = (datetime.fromtimestamp((BASE_MS + MINUTE * w) / 1000, UTC) for w in window)
    calls = []
    arrays = candles_repo.load(
        db, "BTCUSDT", "1m", start, end, chunk_bars=chunk, between_chunks=lambda: calls.append(1)
    )
    fields = ("open_time", "open", "high", "low", "close", "volume")
    loaded = list(zip(*(arrays[f].tolist() for f in fields), strict=True))
    assert loaded == reference(db, "BTCUSDT", "1m", start, end)
    assert arrays["open_time"].dtype == np.int64 and arrays["close"].dtype == np.float64
    assert len(calls) <= len(loaded) // chunk
    db.rollback()


def test_a_stop_between_chunks_ends_the_load(db):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 5_000, seed=3)

    class Stop(Exception):
        pass

    def stop():
        raise Stop

    with pytest.raises(Stop):
        candles_repo.load(db, "BTCUSDT", "1m", chunk_bars=1_000, between_chunks=stop)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Job)) == 0


GOOD = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "5m", "n_iterations": 5, "seed": 1}


def test_bar_cap_is_a_422_naming_the_range_and_count(client, db, clean):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 3_000, seed=1, start_ms=BASE_MS)
    db.commit()
    client.app.state.settings = clean.model_copy(update={"max_bars_per_job": 2_000})
    resp = client.post("/api/v2/training/start", json=GOOD)  # 5m is resampled from all 3,000 1m bars
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["detail"]  # the validation-error shape, naming the range's field
    detail = error["msg"]
    assert error["loc"] == ["body", "end"], error
    assert "start/end" in detail and "3,000" in detail and "2,000" in detail and "MAX_BARS_PER_JOB" in detail
    assert db.scalar(select(func.count()).select_from(Job)) == 0, "nothing written"
    start = datetime.fromtimestamp(BASE_MS / 1000, UTC)
    end = datetime.fromtimestamp((BASE_MS + 1_500 * MINUTE) / 1000, UTC)
    narrowed = client.post("/api/v2/training/start", json={**GOOD, "start": start.isoformat(), "end": end.isoformat()})
    assert narrowed.status_code == 202, narrowed.text
