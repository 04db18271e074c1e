"""The compiled stand-in for Optuna's TPE normal CDF (`kernel.log_ndtr`, put in place by
`optimise.compiled_tpe_normal`): the same numbers to the last bit as Optuna's own, so a seeded
search samples the same parameters with it as without it."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.samplers._tpe import _truncnorm

from app.engine import kernel, optimise
from app.engine.candles import synthetic
from app.engine.costs import Costs
from app.engine.strategies import get_strategy

OPTUNA_LOG_NDTR = _truncnorm._log_ndtr  # Optuna's, before any search replaced it


def test_the_optuna_this_was_checked_against_is_the_installed_one():
    """A new Optuna leaves its own function in place (`compiled_tpe_normal`); check it again
    with this file and move `CHECKED_OPTUNA`."""
    assert optuna.__version__ == optimise.CHECKED_OPTUNA


def test_log_ndtr_equals_optunas_to_the_last_bit():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.normal(0, 10, 50_000),
            rng.uniform(-60, 60, 50_000),  # both sides of −20 (Optuna's series) and of 6
            np.linspace(-1e4, 40, 20_001),
            [np.inf, -np.inf, np.nan, 0.0, -0.0, 6.0, -20.0, 5e-324, 1 / 2**0.5, -(1 / 2**0.5), -1e150],
        ]
    )
    with np.errstate(all="ignore"):
        want = OPTUNA_LOG_NDTR(values)
    got = kernel.log_ndtr(values)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_array_equal(got, want)  # NaN where Optuna's is NaN, every other bit equal
    shaped = values[:12].reshape(3, 4)
    np.testing.assert_array_equal(kernel.log_ndtr(shaped), OPTUNA_LOG_NDTR(shaped))


def _search(strategy: str, monkeypatch, compiled: bool):
    if not compiled:
        monkeypatch.setattr(optimise, "compiled_tpe_normal", lambda: None)
        monkeypatch.setattr(_truncnorm, "_log_ndtr", OPTUNA_LOG_NDTR)
    result = optimise.optimise(
        synthetic(3_000, 4),
        get_strategy(strategy),
        n_iterations=40,
        seed=5,
        objective="sharpe",
        costs=Costs(),
        completed=[],
        on_trial=lambda trial: None,
    )
    return [(t.params, t.score) for t in result.trials]


def test_a_seeded_search_samples_the_same_with_the_compiled_function(monkeypatch):
    """40 trials (30 of them sampled by TPE after its 10 random ones), two strategies."""
    for strategy in ("sma_crossover", "rsi_reversion"):
        with monkeypatch.context() as m:
            plain = _search(strategy, m, compiled=False)
            assert _truncnorm._log_ndtr is OPTUNA_LOG_NDTR
        compiled = _search(strategy, monkeypatch, compiled=True)
        assert _truncnorm._log_ndtr is kernel.log_ndtr
        assert compiled == plain
