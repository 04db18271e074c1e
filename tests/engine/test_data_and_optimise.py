"""CSV parsing, resampling, synthetic data, and optimisation determinism and resume."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.backtest import Costs
from app.engine.candles import Candles, resample, synthetic
from app.engine.csv_import import CandleParseError, parse_csv
from app.engine.optimise import optimise
from app.engine.strategies import get_strategy

GENERIC = """timestamp,open,high,low,close,volume
2024-01-01T00:00:00Z,100,101,99,100.5,10
2024-01-01T00:01:00,100.5,102,100,101,12
1704067320,101,101.5,100.5,101.2,3
"""
KLINE = """1704067200000,100,101,99,100.5,10,1704067259999,1000,5,4,400,0
1704067260000000,100.5,102,100,101,12,1704067319999999,1200,6,5,500,0
"""


def test_generic_layout_with_mixed_timestamps():
    rows = parse_csv(GENERIC.splitlines())
    assert [r.open_time for r in rows] == [1704067200000, 1704067260000, 1704067320000]
    assert rows[1].high == 102 and rows[2].volume == 3


def test_kline_layout_in_ms_and_us():
    rows = parse_csv(KLINE.splitlines())
    assert [r.open_time for r in rows] == [1704067200000, 1704067260000]
    assert parse_csv(KLINE.splitlines()) == rows  # parsing is deterministic


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GENERIC + "2024-01-01T00:03:00Z,1,x,1,1,1\n", 5, "high is not a number"),
        (GENERIC + "2024-01-01T00:03:00Z,100,99,101,100,1\n", 5, "below low"),
        (GENERIC + "2024-01-01T00:03:00Z,100,101,99,100,-1\n", 5, "volume is negative"),
        (GENERIC + "2024-01-01T00:00:00Z,100,101,99,100,1\n", 5, "duplicate timestamp"),
        (GENERIC + "2024-01-01T00:03:00Z,100,101,99\n", 5, "expected 6 columns"),
        (GENERIC + "tomorrow,100,101,99,100,1\n", 5, "timestamp"),
        ("a,b,c\n", 1, "expected a header"),
        ("timestamp,open,high,low,close,volume\n", 1, "no candles"),
    ],
)
def test_errors_name_their_line(text, line, message):
    with pytest.raises(CandleParseError, match=message) as info:
        parse_csv(text.splitlines())
    assert info.value.line == line


def test_resample_matches_a_loop():
    c = synthetic(1_000, 3)
    r = resample(c, "15m")
    for i, start in enumerate(r.open_time):
        sel = (c.open_time // 900_000) * 900_000 == start
        assert r.open[i] == c.open[sel][0] and r.close[i] == c.close[sel][-1]
        assert r.high[i] == c.high[sel].max() and r.low[i] == c.low[sel].min()
        assert r.volume[i] == pytest.approx(c.volume[sel].sum())
    assert len(r) == 67  # 1000 minutes → 66 full buckets and one partial


def test_synthetic_is_deterministic_and_valid():
    a, b = synthetic(2_000, 42), synthetic(2_000, 42)
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.array_equal(a.close, synthetic(2_000, 43).close)
    assert np.all(a.high >= np.maximum(a.open, a.close)) and np.all(a.low <= np.minimum(a.open, a.close))
    assert np.all(np.diff(a.open_time) == 60_000)


def run(train: Candles, n: int, completed=()):
    seen = []
    result = optimise(
        train,
        get_strategy("sma_crossover"),
        n_iterations=n,
        seed=11,
        objective="sharpe",
        costs=Costs(),
        completed=list(completed),
        on_trial=seen.append,
    )
    return result, seen


def test_same_seed_same_result():
    train = synthetic(5_000, 1)
    a, _ = run(train, 15)
    b, _ = run(train, 15)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]


def test_resume_runs_only_the_missing_trials():
    train = synthetic(5_000, 1)
    first, seen_first = run(train, 6)
    assert [t.number for t in seen_first] == list(range(6))
    resumed, seen_resumed = run(train, 15, completed=first.trials)
    assert [t.number for t in seen_resumed] == list(range(6, 15)), "numbers continue from the last trial"
    assert [t.params for t in resumed.trials[:6]] == [t.params for t in first.trials]
    assert len(resumed.trials) == 15
