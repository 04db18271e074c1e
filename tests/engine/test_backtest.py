"""The vectorised backtester against the per-bar reference loop, the position model (fixed
quantity per trade, ruin), input validation, annualisation and hand-checked costs."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.backtest import Costs, backtest
from app.engine.candles import Candles, synthetic
from app.engine.errors import InvalidCandles, InvalidCosts, InvalidPositions, TrainingInputError
from tests.engine.reference import reference_backtest

DAY_MS = 86_400_000


def candles_from(closes, seed=0, times=None, timeframe="1m") -> Candles:
    rng = np.random.default_rng(seed)
    close = np.asarray(closes, dtype=float)
    open_ = close * np.exp(rng.normal(0, 0.002, len(close)))
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    t = 1_700_000_000_000 + 60_000 * np.arange(len(close), dtype=np.int64) if times is None else times
    return Candles(timeframe, np.asarray(t, dtype=np.int64), open_, high, low, close, np.ones(len(close)))


def flat_candles(prices, step_ms=60_000, timeframe="1m") -> Candles:
    p = np.asarray(prices, dtype=float)
    t = 1_700_000_000_000 + step_ms * np.arange(len(p), dtype=np.int64)
    return Candles(timeframe, t, p.copy(), p.copy(), p.copy(), p.copy(), np.ones(len(p)))


@st.composite
def market(draw, max_bars=120):
    """Random walks with shorts' nightmares: +300 % bars, crashes, flat stretches, gaps in time."""
    n = draw(st.integers(2, max_bars))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    moves = rng.normal(0, draw(st.sampled_from([0.0, 0.001, 0.01, 0.1])), n)
    shocks = rng.random(n)
    moves[shocks < draw(st.sampled_from([0.0, 0.05, 0.2]))] = np.log(4.0)  # +300 % bars
    moves[shocks > 1 - draw(st.sampled_from([0.0, 0.05]))] = np.log(0.1)  # −90 % bars
    if draw(st.booleans()):
        a = int(rng.integers(0, n))
        moves[a : a + int(rng.integers(1, n + 1))] = 0.0  # a flat stretch
    close = 100 * np.exp(np.cumsum(moves))
    gaps = rng.integers(1, draw(st.sampled_from([2, 5, 3000])), n)  # 1-minute bars with missing ones
    times = 1_700_000_000_000 + 60_000 * np.cumsum(gaps)
    candles = candles_from(close, seed % 10_000, times)
    positions = np.array(draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)), dtype=np.int8)
    return candles, positions


@settings(max_examples=300, deadline=None)
@given(data=market(), fee=st.floats(0, 50), slip=st.floats(0, 20))
def test_matches_reference_loop(data, fee, slip):
    candles, positions = data
    costs = Costs(fee, slip)
    result = backtest(candles, positions, costs)
    equity, trades = reference_backtest(candles, positions, costs)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9, atol=1e-12)
    got = list(
        zip(result.trades["entry"], result.trades["exit"], result.trades["side"], result.trades["ret"], strict=True)
    )
    assert len(got) == len(trades)
    for (ge, gx, gs, gr), (re_, rx, rs, rr) in zip(got, trades, strict=True):
        assert (ge, gx, gs) == (re_, rx, rs)
        assert gr == pytest.approx(rr, rel=1e-9, abs=1e-12)
    assert result.metrics["n_trades"] == len(trades)


def stop_exits(candles: Candles, positions: np.ndarray, seed: int, share: float) -> np.ndarray:
    """Stop exits at random prices within the bar, on a share of the bars where they are allowed."""
    rng = np.random.default_rng(seed)
    held = np.r_[0, positions[:-1]]
    exits = np.full(len(positions), np.nan)
    where = np.flatnonzero((held != 0) & (positions != held) & (rng.random(len(positions)) < share))
    exits[where] = candles.low[where] + rng.random(len(where)) * (candles.high[where] - candles.low[where])
    return exits


@settings(max_examples=300, deadline=None)
@given(data=market(), fee=st.floats(0, 50), seed=st.integers(0, 10_000), share=st.sampled_from([0.3, 1.0]))
def test_stop_exits_match_reference_loop(data, fee, seed, share):
    candles, positions = data
    exits = stop_exits(candles, positions, seed, share)
    costs = Costs(fee, 2)
    result = backtest(candles, positions, costs, exits)
    equity, trades = reference_backtest(candles, positions, costs, exits)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9, atol=1e-12)
    got = list(
        zip(result.trades["entry"], result.trades["exit"], result.trades["side"], result.trades["ret"], strict=True)
    )
    assert len(got) == len(trades)
    for (ge, gx, gs, gr), (re_, rx, rs, rr) in zip(got, trades, strict=True):
        assert (ge, gx, gs) == (re_, rx, rs)
        assert gr == pytest.approx(rr, rel=1e-9, abs=1e-12)
    assert np.prod(1.0 + result.trades["ret"]) == pytest.approx(result.equity[-1], rel=1e-9, abs=1e-12)


def test_a_stop_fills_within_its_bar():
    """Long at 100 (bar 1's open), stopped at 97 inside bar 2: the trade returns −3 %, and the
    equity at bar 2's close is after the exit, whatever the close."""
    t = 1_700_000_000_000 + 60_000 * np.arange(4, dtype=np.int64)
    c = Candles(
        "1m",
        t,
        np.array([100.0, 100, 99, 90]),
        np.array([100.0, 101, 99, 91]),
        np.array([100.0, 99, 90, 89]),
        np.array([100.0, 99, 91, 90]),
        np.ones(4),
    )
    exits = np.array([np.nan, np.nan, 97.0, np.nan])
    result = backtest(c, np.array([1, 1, 0, 0], dtype=np.int8), Costs(0, 0), exits)
    assert list(result.trades["ret"]) == pytest.approx([-0.03])
    assert list(result.trades["exit_price"]) == [97.0] and list(result.trades["stopped"]) == [True]
    assert list(result.equity) == pytest.approx([1.0, 0.99, 0.97, 0.97])


@pytest.mark.parametrize(
    ("exits", "positions"),
    [
        ([np.nan, np.nan, 120.0, np.nan], [1, 1, 0, 0]),  # above the bar's high
        ([np.nan, 99.5, np.nan, np.nan], [0, 0, 0, 0]),  # no position held during the bar
        ([np.nan, np.nan, 97.0, np.nan], [1, 1, 1, 0]),  # the position does not change after it
    ],
)
def test_a_bad_stop_exit_is_refused(exits, positions):
    t = 1_700_000_000_000 + 60_000 * np.arange(4, dtype=np.int64)
    c = Candles(
        "1m",
        t,
        np.array([100.0, 100, 99, 90]),
        np.array([100.0, 101, 99, 91]),
        np.array([100.0, 99, 90, 89]),
        np.array([100.0, 99, 91, 90]),
        np.ones(4),
    )
    with pytest.raises(InvalidPositions, match="exit price at bar"):
        backtest(c, np.array(positions, dtype=np.int8), Costs(0, 0), np.array(exits))


@settings(max_examples=300, deadline=None)
@given(data=market(), fee=st.floats(0, 50))
def test_trade_returns_compound_to_the_equity_curve(data, fee):
    """One position model for trades and equity: flat periods earn nothing, so the product of
    the trades' growth is the final equity, and equity never goes below 0."""
    candles, positions = data
    result = backtest(candles, positions, Costs(fee, 0))
    assert np.prod(1.0 + result.trades["ret"]) == pytest.approx(result.equity[-1], rel=1e-9, abs=1e-12)
    assert np.all(result.equity >= 0)
    assert np.all(result.trades["ret"] >= -1)
    gone = np.flatnonzero(result.equity == 0)
    if len(gone):  # ruin is final: nothing after it
        assert np.all(result.equity[gone[0] :] == 0)
        assert result.metrics["total_return"] == -1.0
        assert result.trades["ret"][-1] == -1.0


def test_a_short_through_two_300_percent_bars_is_ruined_not_rich():
    c = flat_candles([100.0, 100.0, 400.0, 1600.0, 1600.0, 100.0])
    result = backtest(c, np.array([-1, -1, -1, -1, 1, 1], dtype=np.int8), Costs(0, 0))
    assert list(result.equity) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert result.metrics["total_return"] == -1.0
    assert result.metrics["max_drawdown"] == 1.0
    assert result.metrics["cagr"] is None and "0.0 days" in result.metrics["null_reasons"]["cagr"]
    # One trade, closed at the open where equity hit zero; the later long is ignored.
    assert list(result.trades["ret"]) == [-1.0]
    assert list(result.trades["exit"]) == [2] and list(result.trades["exit_price"]) == [400.0]
    assert result.metrics["exposure"] == pytest.approx(1 / 6)


def test_a_short_trade_is_a_fixed_quantity():
    """Short 1 unit-of-equity at 100: at 150 equity is 0.5 (not 1/1.5 re-sized every bar), and the
    trade's return agrees with the equity curve."""
    c = flat_candles([100.0, 100.0, 150.0, 150.0, 75.0])
    result = backtest(c, np.array([-1, -1, -1, -1, 0], dtype=np.int8), Costs(0, 0))
    assert list(result.equity) == pytest.approx([1.0, 1.0, 0.5, 0.5, 1.25])
    assert list(result.trades["ret"]) == pytest.approx([0.25])


def test_fees_are_charged_on_each_fills_notional():
    c = flat_candles([100.0, 100.0, 100.0, 100.0])
    # Long from bar 1's open, flip short at bar 2's open, flat at bar 3's open: four fills.
    result = backtest(c, np.array([1, -1, 0, 0], dtype=np.int8), Costs(fee_bps=10, slippage_bps=0))
    # Buy 1.0 notional (fee 0.001) → 0.999; sell it (fee 0.001) → 0.998; short 0.998 notional
    # (fee 0.000998) → 0.997002; buy it back (fee 0.000998) → 0.996004.
    assert list(result.equity) == pytest.approx([1.0, 0.999, 0.997002, 0.996004])
    assert list(result.trades["ret"]) == pytest.approx([-0.002, 0.996004 / 0.998 - 1])
    assert result.metrics["n_trades"] == 2


def test_an_open_position_is_closed_at_the_last_close_net_of_its_cost():
    c = flat_candles([100.0, 100.0, 110.0])
    result = backtest(c, np.array([1, 1, 1], dtype=np.int8), Costs(fee_bps=10, slippage_bps=0))
    assert result.equity[-1] == pytest.approx(0.999 + 0.1 - 0.0011)
    assert list(result.trades["exit"]) == [3] and list(result.trades["exit_price"]) == [110.0]


def test_signal_is_filled_at_the_next_open():
    c = flat_candles([100.0, 110.0, 121.0])
    # Long decided on bar 0's close: earns nothing on bar 0, gains from bar 1's open onwards.
    result = backtest(c, np.array([1, 1, 1], dtype=np.int8), Costs(0, 0))
    assert list(result.equity) == pytest.approx([1.0, 1.0, 1.1])


def test_undefined_metrics_are_none_not_zero():
    c = synthetic(5_000, 1)
    flat = backtest(c, np.zeros(5_000, dtype=np.int8))
    m = flat.metrics
    assert m["total_return"] == 0 and m["n_trades"] == 0 and m["max_drawdown"] == 0
    assert m["sharpe"] is None and m["win_rate"] is None and m["calmar"] is None
    long = backtest(c, np.ones(5_000, dtype=np.int8), Costs(0, 0))
    assert long.metrics["exposure"] == pytest.approx(4_999 / 5_000)
    assert 0 <= long.metrics["max_drawdown"] <= 1
    figures = {k: v for k, v in long.metrics.items() if k != "null_reasons"}
    assert all(v is None or math.isfinite(v) for v in figures.values())
    assert set(long.metrics["null_reasons"]) == {k for k, v in figures.items() if v is None}
    assert len(long.equity_curve(100)) == 100


def test_one_trade_up_only_has_no_calmar():
    c = flat_candles(100.0 + np.arange(100.0), step_ms=DAY_MS, timeframe="1d")
    m = backtest(c, np.ones(100, dtype=np.int8), Costs(0, 0)).metrics
    assert m["max_drawdown"] == 0 and m["calmar"] is None and m["win_rate"] == 1.0
    assert m["cagr"] is not None and m["null_reasons"] == {"calmar": "no drawdown to divide by"}


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("close", 7, np.nan, "bar 7 .*close nan is not a finite number"),
        ("open", 3, np.inf, "bar 3 .*open inf is not a finite number"),
        ("low", 5, 0.0, "bar 5 .*low 0.0 is not positive"),
        ("close", 2, -1.0, "bar 2 .*close -1.0 is not positive"),
        ("high", 4, 1.0, "bar 4 .*is below the low"),
        ("volume", 6, np.nan, "bar 6 .*volume"),
    ],
)
def test_bad_prices_are_named_not_hidden(field, index, value, message):
    c = candles_from(100 * np.exp(np.cumsum(np.full(10, 0.001))))
    getattr(c, field)[index] = value
    with pytest.raises(InvalidCandles, match=message) as caught:
        backtest(c, np.ones(10, dtype=np.int8))
    assert isinstance(caught.value, TrainingInputError)
    assert "2023-11-14T22:" in str(caught.value)  # the bar's time, UTC


def test_times_out_of_order_are_named():
    c = candles_from(np.full(5, 100.0))
    c.open_time[3] = c.open_time[2]
    with pytest.raises(InvalidCandles, match=r"bar 3 .*open_time"):
        backtest(c, np.zeros(5, dtype=np.int8))


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (np.array([0, 1, 3, 0]), "bar 2 is 3"),
        (np.array([0, 1, -2, 0], dtype=np.int8), "bar 2 is -2"),
        (np.array([0, 0.5, 1, 0]), "bar 1 is 0.5"),
        (np.array([0, np.nan, 1, 0]), "bar 1 is nan"),
        (np.array([0, 1, 0]), r"shape \(3,\) for 4 candles"),
        (np.array(["a", "b", "c", "d"]), "dtype"),
    ],
)
def test_positions_are_validated(positions, message):
    with pytest.raises(InvalidPositions, match=message):
        backtest(flat_candles([100.0] * 4), positions)


@pytest.mark.parametrize("costs", [{"fee_bps": -1.0}, {"slippage_bps": math.nan}, {"fee_bps": 10_000.0}])
def test_costs_are_validated(costs):
    with pytest.raises(InvalidCosts):
        Costs(**costs)


# -- annualisation ---------------------------------------------------------------------------


def stock_calendar(first: date, last: date, sessions_per_year: int = 252) -> np.ndarray:
    """Weekday sessions with the last few weekdays of each year dropped as holidays, so every full
    year has exactly `sessions_per_year` sessions."""
    days = [first + timedelta(d) for d in range((last - first).days + 1)]
    weekdays = [d for d in days if d.weekday() < 5]
    by_year: dict[int, list[date]] = {}
    for d in weekdays:
        by_year.setdefault(d.year, []).append(d)
    kept = [d for year in sorted(by_year) for d in by_year[year][:sessions_per_year]]
    return np.array([int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000) for d in kept])


def test_daily_stock_data_is_annualised_by_its_own_calendar():
    times = stock_calendar(date(2015, 1, 1), date(2023, 12, 31))  # nine full years
    n = len(times)
    assert n == 9 * 252
    rng = np.random.default_rng(3)
    c = candles_from(100 * np.exp(np.cumsum(rng.normal(0.0004, 0.01, n))), 3, times, timeframe="1d")
    assert c.periods_per_year == pytest.approx(252, rel=0.01)
    years = (times[-1] + DAY_MS - times[0]) / (365.25 * DAY_MS)
    assert c.span_years == pytest.approx(years) and years == pytest.approx(9, abs=0.05)

    result = backtest(c, np.ones(n, dtype=np.int8), Costs(0, 0))
    final = result.equity[-1]
    assert result.metrics["cagr"] == pytest.approx(final ** (1 / years) - 1, rel=1e-12)
    returns = np.diff(np.r_[1.0, result.equity]) / np.r_[1.0, result.equity[:-1]]
    expected_sharpe = returns.mean() / returns.std(ddof=1) * math.sqrt(n / years)
    assert result.metrics["sharpe"] == pytest.approx(expected_sharpe, rel=1e-9)


def test_24_7_minute_data_has_a_minute_per_period():
    c = synthetic(1_000, 1)
    assert c.periods_per_year == pytest.approx(365.25 * 24 * 60)
