"""What a result's yearly figures are worth: annualisation at the bars per year the data really
has (trading sessions, not 24/7), no CAGR or Calmar over a span too short to annualise, and the
costs a job was trained with reaching every backtest of its pipeline."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from app.engine.backtest import Costs, backtest
from app.engine.candles import TIMEFRAMES, YEAR_MS, Candles, synthetic
from app.engine.errors import TrainingInputError
from app.engine.pipeline import TrainingSpec, run_training
from app.engine.ranges import for_strategy
from app.engine.strategies import get_strategy
from app.engine.validate import split_at
from tests.engine.reference import reference_backtest
from tests.engine.test_validation import Hooks

DAY_MS = 86_400_000
SESSION_BARS = 390  # 14:30–21:00 UTC, one bar a minute


def session_times(first: date, weekdays: int) -> np.ndarray:
    """1-minute bars of a 6.5-hour session on `weekdays` consecutive weekdays from `first`."""
    out, day = [], first
    while len(out) < weekdays:
        if day.weekday() < 5:
            out.append(int(datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC).timestamp() * 1000))
        day += timedelta(days=1)
    opens = np.array(out, dtype=np.int64)
    return (opens[:, None] + 60_000 * np.arange(SESSION_BARS, dtype=np.int64)[None, :]).ravel()


def walk_on(times: np.ndarray, seed: int = 5, timeframe: str = "1m") -> Candles:
    rng = np.random.default_rng(seed)
    n = len(times)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0001, 0.001, n)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.0005, np.minimum(open_, close) * 0.9995
    return Candles(timeframe, np.asarray(times, dtype=np.int64), open_, high, low, close, np.ones(n))


def per_bar_sharpe(result) -> float:
    equity = result.equity
    returns = equity / np.r_[1.0, equity[:-1]] - 1.0
    return float(returns.mean() / returns.std(ddof=1))


# -- annualisation from the data's own bars per year --------------------------------------------


def test_session_data_is_annualised_by_its_sessions_not_24_7():
    """The same closes on weekday sessions and on 24/7 minutes: the Sharpe ratios differ by the
    square root of the bars-per-year ratio, each counted by hand (5 sessions of 390 bars a week,
    against 60·24·365.25 minutes a year)."""
    session = session_times(date(2024, 3, 4), 40)  # eight weeks of weekdays
    n = len(session)
    always = session[0] + 60_000 * np.arange(n, dtype=np.int64)
    on_sessions, on_24_7 = walk_on(session), walk_on(always)
    assert np.array_equal(on_sessions.close, on_24_7.close)

    session_year = 5 * SESSION_BARS * 365.25 / 7  # bars a week × weeks a year
    minute_year = 365.25 * 24 * 60
    assert on_sessions.periods_per_year == pytest.approx(session_year, rel=1e-12)
    assert on_24_7.periods_per_year == pytest.approx(minute_year, rel=1e-12)

    long = np.ones(n, dtype=np.int8)
    a, b = backtest(on_sessions, long, Costs(0, 0)), backtest(on_24_7, long, Costs(0, 0))
    assert a.metrics["sharpe"] / b.metrics["sharpe"] == pytest.approx(math.sqrt(session_year / minute_year), rel=1e-9)
    assert a.metrics["sharpe"] == pytest.approx(per_bar_sharpe(a) * math.sqrt(session_year), rel=1e-9)


def test_one_session_is_annualised_at_the_datas_rate_not_its_own_span():
    """A holdout of one session, cut from the data it came from, is annualised at the data's
    sessions a year: over its own 6.5 hours it looks like 24/7 trading (Sharpe ×2.3)."""
    data = walk_on(session_times(date(2024, 1, 8), 60))
    one_session = data[len(data) - SESSION_BARS :]
    result = backtest(one_session, np.ones(SESSION_BARS, dtype=np.int8), Costs(0, 0))
    expected = per_bar_sharpe(result) * math.sqrt(5 * SESSION_BARS * 365.25 / 7)
    assert result.metrics["sharpe"] == pytest.approx(expected, rel=1e-9)


def test_a_year_and_more_of_session_data_counts_its_holidays():
    """Over a year or more the bars observed per elapsed year are the figure: holidays count."""
    first = date(2023, 1, 2)
    weekdays = [first + timedelta(d) for d in range(385) if (first + timedelta(d)).weekday() < 5]
    kept = weekdays[: len(weekdays) - 9]  # nine holidays, taken at the end
    opens = np.array([int(datetime(d.year, d.month, d.day, 14, 30, tzinfo=UTC).timestamp() * 1000) for d in kept])
    times = (opens[:, None] + 60_000 * np.arange(SESSION_BARS)[None, :]).ravel()
    c = walk_on(times)
    span_years = (times[-1] + 60_000 - times[0]) / YEAR_MS
    assert span_years >= 1
    assert c.periods_per_year == pytest.approx(len(times) / span_years, rel=1e-12)


@pytest.mark.parametrize("timeframe, n", [("1m", 3_000), ("1m", 30_000), ("5m", 20_000), ("1h", 500), ("1d", 400)])
def test_24_7_data_keeps_its_figure(timeframe, n):
    """Round-the-clock data is annualised as before: one bar per timeframe step, all year."""
    c = synthetic(n, 1, timeframe=timeframe)
    assert c.periods_per_year == pytest.approx(YEAR_MS / TIMEFRAMES[timeframe], rel=1e-12)
    assert c[n // 3 : n // 2].periods_per_year == c.periods_per_year


# -- CAGR and Calmar only over a span worth annualising -----------------------------------------


def rising(days: float, gain: float) -> Candles:
    """Hourly 24/7 bars over `days` whose close rises steadily by `gain` in all."""
    n = int(days * 24)
    p = 100.0 * (1.0 + gain) ** (np.arange(n) / (n - 1))
    t = 1_700_000_000_000 + 3_600_000 * np.arange(n, dtype=np.int64)
    return Candles("1h", t, p.copy(), p * 1.001, p * 0.999, p.copy(), np.ones(n))


def test_a_fortnight_has_no_cagr_or_calmar_only_its_total_return():
    c = rising(14, 0.03)
    c = Candles(c.timeframe, c.open_time, c.open, c.high, c.low * 0.97, c.close, c.volume)  # room for a drawdown
    positions = np.ones(len(c), dtype=np.int8)
    positions[100:110] = 0
    m = backtest(c, positions, Costs(0, 0)).metrics
    assert m["total_return"] == pytest.approx(0.03, abs=0.005)
    assert m["cagr"] is None and m["calmar"] is None
    assert "14 days" in m["null_reasons"]["cagr"] and "90" in m["null_reasons"]["cagr"]
    assert m["null_reasons"]["calmar"] == m["null_reasons"]["cagr"]
    assert m["sharpe"] is not None and "sharpe" not in m["null_reasons"]


def test_ninety_days_are_annualised():
    c = rising(90, 0.03)
    m = backtest(c, np.ones(len(c), dtype=np.int8), Costs(0, 0)).metrics
    years = (c.open_time[-1] + 3_600_000 - c.open_time[0]) / YEAR_MS
    assert m["cagr"] == pytest.approx((1 + m["total_return"]) ** (1 / years) - 1, rel=1e-12)
    assert "cagr" not in m["null_reasons"]


def test_every_undefined_figure_says_why():
    flat = Candles("1h", 1_700_000_000_000 + 3_600_000 * np.arange(300), *(np.full(300, 100.0),) * 4, np.ones(300))
    m = backtest(flat, np.zeros(300, dtype=np.int8), Costs(0, 0)).metrics
    assert m["total_return"] == 0.0
    undefined = {k for k, v in m.items() if v is None}
    assert undefined == set(m["null_reasons"]) == {"cagr", "sharpe", "calmar", "win_rate"}


# -- a job's costs reach every backtest of its pipeline -----------------------------------------


@pytest.mark.parametrize("fee_bps, slippage_bps", [(0.0, 0.0), (25.0, 5.0)])
def test_the_jobs_costs_price_its_holdout_as_the_reference_loop_does(fee_bps, slippage_bps):
    data = synthetic(3_000, 11, timeframe="5m")
    strategy = get_strategy("sma_crossover")
    outcomes = {}
    for costs in (Costs(), Costs(fee_bps, slippage_bps)):
        spec = TrainingSpec(
            "sma_crossover", "X", "5m", 12, seed=3, min_trades=1, fee_bps=costs.fee_bps, slippage_bps=costs.slippage_bps
        )
        outcome = run_training(spec, data, Hooks())
        cut = split_at(len(data), spec.holdout_fraction)
        holdout = for_strategy(data, cut, len(data), strategy)
        positions, exits = holdout.orders(strategy, outcome.params)
        reference, _ = reference_backtest(holdout.bars, positions, costs, exits)
        assert outcome.validation_metrics["total_return"] == pytest.approx(reference[-1] - 1.0, rel=1e-9, abs=1e-12)
        outcomes[costs] = outcome
    # Buy-and-hold over the holdout is one round trip: costs take exactly c·(1 + exit/entry).
    bars = for_strategy(data, split_at(len(data), 0.2), len(data), strategy).bars
    ratio = bars.close[-1] / bars.open[1]
    gross = {c: o.benchmark_metrics["validation"]["total_return"] for c, o in outcomes.items()}
    for costs, total in gross.items():
        assert total == pytest.approx(ratio - 1.0 - costs.per_side * (1.0 + ratio), rel=1e-12)


@pytest.mark.parametrize("mode", ["holdout", "walk_forward"])
def test_the_calmar_objective_on_a_short_range_fails_at_once_saying_why(mode):
    """Calmar is undefined under 90 days, so every trial would be infeasible: the job says so
    before running any."""
    hooks = Hooks()
    spec = TrainingSpec("sma_crossover", "X", "1h", 5, seed=1, objective="calmar", validation_mode=mode)
    with pytest.raises(TrainingInputError, match="calmar objective needs at least 90 days"):
        run_training(spec, synthetic(24 * 60, 1, timeframe="1h"), hooks)
    assert hooks.saved == []
    long = run_training(
        TrainingSpec("sma_crossover", "X", "1h", 3, seed=1, objective="calmar", min_trades=1),
        synthetic(24 * 150, 1, timeframe="1h"),
        Hooks(),
    )
    assert long.train_metrics["calmar"] is not None
