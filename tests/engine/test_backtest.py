"""The vectorised backtester against the per-bar reference loop, and hand-checked costs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.backtest import Costs, backtest
from app.engine.candles import Candles, synthetic
from tests.engine.reference import reference_backtest


def candles_from(closes, seed=0) -> Candles:
    rng = np.random.default_rng(seed)
    close = np.asarray(closes, dtype=float)
    open_ = close * np.exp(rng.normal(0, 0.002, len(close)))
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    t = 1_700_000_000_000 + 60_000 * np.arange(len(close), dtype=np.int64)
    return Candles("1m", t, open_, high, low, close, np.ones(len(close)))


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 120),
    seed=st.integers(0, 10_000),
    fee=st.floats(0, 50),
    slip=st.floats(0, 20),
    data=st.data(),
)
def test_matches_reference_loop(n, seed, fee, slip, data):
    rng = np.random.default_rng(seed)
    candles = candles_from(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), seed)
    positions = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)), dtype=np.int8)
    costs = Costs(fee, slip)
    result = backtest(candles, positions, costs)
    equity, trades = reference_backtest(candles, positions, costs)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9)
    got = list(
        zip(result.trades["entry"], result.trades["exit"], result.trades["side"], result.trades["ret"], strict=True)
    )
    assert len(got) == len(trades)
    for (ge, gx, gs, gr), (re_, rx, rs, rr) in zip(got, trades, strict=True):
        assert (ge, gx, gs) == (re_, rx, rs)
        assert gr == pytest.approx(rr, rel=1e-9, abs=1e-12)
    assert result.metrics["n_trades"] == len(trades)


def test_fees_are_charged_on_each_side():
    closes = [100.0, 100.0, 100.0, 100.0]
    c = Candles(
        "1m",
        np.arange(4, dtype=np.int64) * 60_000,
        np.array(closes),
        np.array(closes) * 1.0,
        np.array(closes) * 1.0,
        np.array(closes),
        np.ones(4),
    )
    # Long from bar 1's open, flip short at bar 2's open, flat at bar 3's open: 1 + 2 + 1 sides.
    result = backtest(c, np.array([1, -1, 0, 0], dtype=np.int8), Costs(fee_bps=10, slippage_bps=0))
    assert result.equity[-1] == pytest.approx(0.999 * (1 - 2 * 0.001) * 0.999)  # a flip pays |Δ| = 2 sides
    assert result.metrics["n_trades"] == 2


def test_signal_is_filled_at_the_next_open():
    c = Candles(
        "1m",
        np.arange(3, dtype=np.int64) * 60_000,
        np.array([100.0, 110.0, 121.0]),
        np.array([100.0, 110.0, 121.0]),
        np.array([100.0, 110.0, 121.0]),
        np.array([100.0, 110.0, 121.0]),
        np.ones(3),
    )
    # Long decided on bar 0's close: earns nothing on bar 0, gains from bar 1's open onwards.
    result = backtest(c, np.array([1, 1, 1], dtype=np.int8), Costs(0, 0))
    assert list(result.equity) == pytest.approx([1.0, 1.0, 1.1])


def test_metrics_are_json_safe_and_sane():
    c = synthetic(5_000, 1)
    flat = backtest(c, np.zeros(5_000, dtype=np.int8))
    assert flat.metrics["total_return"] == 0 and flat.metrics["n_trades"] == 0 and flat.metrics["sharpe"] == 0
    long = backtest(c, np.ones(5_000, dtype=np.int8), Costs(0, 0))
    assert long.metrics["exposure"] == pytest.approx(4_999 / 5_000)
    assert 0 <= long.metrics["max_drawdown"] <= 1
    assert len(long.equity_curve(100)) == 100
