"""Strategies: no look-ahead, parameter validation, and a working registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.candles import Candles, synthetic
from app.engine.errors import InvalidParams, UnknownStrategy
from app.engine.strategies import STRATEGIES, get_strategy

PARAMS = {
    "sma_crossover": {"fast": 5, "slow": 20},
    "rsi_reversion": {"period": 7, "lower": 30.0, "upper": 70.0},
    "bollinger_breakout": {"window": 15, "k": 1.5},
    "liquidity_sweep": {"lookback": 10, "stop_pct": 0.5, "max_hold": 15},
}


def perturb_after(c: Candles, t: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    factor = np.ones(len(c))
    factor[t + 1 :] = np.exp(rng.normal(0, 0.05, len(c) - t - 1))
    widen = np.where(np.arange(len(c)) > t, 1.02, 1.0)  # wicks change only after t too
    return Candles(
        c.timeframe,
        c.open_time,
        c.open * factor,
        c.high * factor * widen,
        c.low * factor / widen,
        c.close * factor,
        c.volume,
    )


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(PARAMS)), t=st.integers(0, 798), seed=st.integers(0, 1000))
def test_changing_bars_after_t_never_changes_positions_up_to_t(name, t, seed):
    c = synthetic(800, seed)
    strategy = get_strategy(name)
    before = strategy.signals(c, PARAMS[name])
    after = strategy.signals(perturb_after(c, t, seed + 1), PARAMS[name])
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_strategy_trades_and_stays_in_range(name):
    pos = get_strategy(name).signals(synthetic(5_000, 4), PARAMS[name])
    assert set(np.unique(pos)) <= {-1, 0, 1}
    assert np.count_nonzero(np.diff(pos)) > 0
    assert set(STRATEGIES) == set(PARAMS)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": 20, "slow": 5}, "fast must be less than slow"),
        ({"fast": 5}, "missing"),
        ({"fast": 5, "slow": 20, "extra": 1}, "unknown"),
        ({"fast": 5.5, "slow": 20}, "'fast' must be an integer"),
        ({"fast": 1, "slow": 20}, "'fast' must be between"),
        ({"fast": True, "slow": 20}, "'fast' must be an integer"),
    ],
)
def test_invalid_params_name_the_parameter(params, message):
    with pytest.raises(InvalidParams, match=message):
        get_strategy("sma_crossover").validate_params(params)


def test_unknown_strategy():
    with pytest.raises(UnknownStrategy, match="known: bollinger_breakout"):
        get_strategy("moon")
