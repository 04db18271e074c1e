"""The example strategy's own tests: run them with trad's virtualenv after `pip install -e .`
here (`../../.venv/bin/pytest tests`)."""

from __future__ import annotations

import numpy as np
from ema_volatility import ewma, strategy, volatility

from app.engine.candles import synthetic

PARAMS = {"fast": 5, "slow": 20, "vol_window": 30, "vol_max": 0.02, "mode": "long_short"}


def test_ewma_matches_the_weighted_sum_it_is_written_as():
    x = np.arange(1.0, 101.0)
    n = 4 * 5
    w = (1 - 2 / 6) ** np.arange(n)
    assert np.isnan(ewma(x, 5)[n - 2])
    assert np.isclose(ewma(x, 5)[-1], np.dot(w, x[::-1][:n]) / w.sum())


def test_positions_are_minus_one_zero_or_one_and_flat_in_a_storm():
    c = synthetic(3000, 1)
    positions = strategy.signals(c, PARAMS)
    assert len(positions) == len(c) and set(np.unique(positions)) <= {-1, 0, 1}
    stormy = volatility(c.close, 30) > 0.02
    assert not positions[stormy].any()
    assert not positions[: strategy.warmup(PARAMS) - 1].any()


def test_long_only_never_shorts():
    positions = strategy.signals(synthetic(3000, 2), {**PARAMS, "mode": "long_only", "vol_max": 0.05})
    assert positions.min() == 0 and positions.max() == 1


def test_more_history_than_the_warmup_changes_nothing():
    c = synthetic(3000, 3)
    first = 1000
    with_warmup = strategy.range_positions(c, PARAMS, first, 3000)
    with_all = strategy.signals(c, PARAMS)[first:]
    assert np.array_equal(with_warmup, with_all)


def test_the_constraint_refuses_fast_not_below_slow():
    assert strategy.constraint({**PARAMS, "fast": 20}) == "fast must be less than slow"
