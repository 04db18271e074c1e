"""The look-ahead and warm-up bias checks: every built-in strategy passes at random parameters on
random data; strategies that read the future (the next bar's close, the whole series' maximum, a
centred window) fail with LookaheadBias, and ones whose indicators need more history than they
declare fail with WarmupTooShort, each naming the first bar, its time and the parameters; the
checks work on short slices; a training run with a biased strategy fails and returns nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine import bias
from app.engine import indicators as ind
from app.engine.candles import Candles, synthetic
from app.engine.errors import LookaheadBias, StrategyBias, WarmupTooShort
from app.engine.pipeline import TrainingSpec, run_training
from app.engine.registry import get_strategy
from app.engine.registry import strategies as installed
from app.engine.strategies import STRATEGIES
from app.engine.strategy import FloatParam, IntParam, Strategy

# --- hand-made strategies, built with the engine's Strategy -----------------------------------


def _sign(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.nan_to_num(ind.sign(x, ref)).astype(np.int8)


def _next_close(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """Long when the next bar closes higher: shift(-1)."""
    following = np.r_[c.close[1:], c.close[-1]]
    return _sign(following - c.close, c.close)


def _max_normalised(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """Long in the top part of the whole series' range: a normalisation by the full series' max."""
    return np.where(c.close / c.close.max() > p["level"], 1, -1).astype(np.int8)


def _centred(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """Price against a centred rolling mean (pandas' rolling(center=True))."""
    w = p["window"]
    mean = np.full(len(c), np.nan)
    full = np.convolve(c.close, np.ones(w) / w, mode="valid")
    mean[w // 2 : w // 2 + len(full)] = full
    return _sign(c.close - mean, mean)


def _ema(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """Price against an exponential moving average seeded with the first close: recursive."""
    alpha = 2.0 / (p["span"] + 1)
    ema = np.empty(len(c))
    level = c.close[0]
    for i, x in enumerate(c.close):
        level = alpha * x + (1 - alpha) * level
        ema[i] = level
    return _sign(c.close - ema, ema)


def _sma(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    mean = ind.Rolling(c.close).mean(p["window"])
    return _sign(c.close - mean, mean)


NEXT_CLOSE = Strategy("next_close", (), _next_close, lambda p: 1)
MAX_NORMALISED = Strategy("max_normalised", (FloatParam("level", 0.1, 0.99),), _max_normalised, lambda p: 1)
CENTRED = Strategy("centred", (IntParam("window", 3, 99),), _centred, lambda p: p["window"])
EMA_ONE_BAR = Strategy("ema_one_bar", (IntParam("span", 2, 100),), _ema, lambda p: 1)
SMA_SHORT = Strategy("sma_short", (IntParam("window", 2, 500),), _sma, lambda p: p["window"] // 5)
SMA_EXACT = Strategy("sma_exact", (IntParam("window", 2, 500),), _sma, lambda p: p["window"] - 1)


def iso(c: Candles, bar: int) -> str:
    return datetime.fromtimestamp(int(c.open_time[bar]) / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def bar_at(c: Candles, when: str) -> int:
    return int(
        np.searchsorted(c.open_time, datetime.strptime(when, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC).timestamp() * 1000)
    )


def depends_on_later_bars(strategy: Strategy, c: Candles, params: dict, bar: int) -> bool:
    """Does the position at `bar` change when the bars after it go, or are scaled up or down?"""
    real = strategy.signals(c, params)[bar]
    cut = strategy.signals(c[: bar + 1], params)[bar]

    def scaled(factor: float) -> Candles:
        f = np.r_[np.ones(bar + 1), np.full(len(c) - bar - 1, factor)]
        return Candles(c.timeframe, c.open_time, c.open * f, c.high * f, c.low * f, c.close * f, c.volume)

    return cut != real or any(strategy.signals(scaled(k), params)[bar] != real for k in (10.0, 0.1))


def params_in(strategy: Strategy, draw) -> dict:
    """Parameters drawn from the strategy's space (windows up to 400 bars)."""
    if strategy.name == "sma_crossover":
        fast = draw(st.integers(2, 200))
        return {"fast": fast, "slow": draw(st.integers(fast + 1, 400))}
    params = {}
    for spec in strategy.space:
        if spec.kind == "int":
            params[spec.name] = draw(st.integers(int(spec.low), min(int(spec.high), 400)))
        else:
            params[spec.name] = draw(st.floats(spec.low, spec.high))
    return strategy.validate_params(params)


# --- built-in strategies pass ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(STRATEGIES)),
    data=st.data(),
    bars=st.integers(600, 9_000),
    seed=st.integers(0, 10_000),
    timeframe=st.sampled_from(["1m", "5m", "1h", "1d"]),
)
def test_every_built_in_strategy_passes_at_random_parameters_on_random_data(name, data, bars, seed, timeframe):
    strategy = get_strategy(name)
    params = params_in(strategy, data.draw)
    candles = synthetic(bars, seed, timeframe=timeframe)
    report = bias.check(strategy, candles, params, seed=seed)
    found = report.as_dict()
    assert found["passed"] is True and found["params_checked"] == 1
    tried = found["lookahead"]["bars_tried"]
    assert 1 <= len(tried) <= bias.LOOKAHEAD_POINTS and all(0 <= t < bars - 1 for t in tried)
    assert found["lookahead"]["times_tried"] == [iso(candles, t) for t in tried]
    warm = found["warmup"]
    assert warm["declared"] == strategy.warmup(params)
    if warm["skipped"] is None:
        assert warm["ranges"] and warm["history_lengths"][0] == min(warm["declared"], warm["ranges"][0][0])
        assert len(warm["history_lengths"]) >= 2


def test_the_bars_tried_follow_the_seed_and_spread_over_the_range():
    candles = synthetic(30_000, 5)
    strategy, params = get_strategy("sma_crossover"), {"fast": 20, "slow": 80}
    first = bias.check(strategy, candles, params, seed=11).as_dict()
    again = bias.check(strategy, candles, params, seed=11).as_dict()
    other = bias.check(strategy, candles, params, seed=12).as_dict()
    assert first["lookahead"] == again["lookahead"] and first["warmup"] == again["warmup"]
    assert first["lookahead"]["bars_tried"] != other["lookahead"]["bars_tried"]
    tried = first["lookahead"]["bars_tried"]
    assert len(tried) == bias.LOOKAHEAD_POINTS
    # Spread over the range (three drawn one in each third), half where the position changes
    # (sma_crossover is a function of its indicators, so its slices' positions are the data's).
    assert {t * 3 // 30_000 for t in tried} == {0, 1, 2}
    positions = strategy.signals(candles, params)
    assert sum(positions[t] != positions[t - 1] for t in tried) >= 3
    # Histories: the declared warm-up, twice it, and all the bars before the furthest range.
    furthest = max(r[0] for r in first["warmup"]["ranges"])
    assert first["warmup"]["history_lengths"] == [80, 160, furthest]


# --- look-ahead is caught ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "params", "seed"),
    [
        (NEXT_CLOSE, {}, 1),
        (MAX_NORMALISED, {"level": 0.9}, 2),
        (MAX_NORMALISED, {"level": 0.3}, 3),
        (CENTRED, {"window": 21}, 4),
        (CENTRED, {"window": 3}, 5),
    ],
    ids=["shift(-1)", "full-series max", "full-series max, low level", "centred window", "centred window of 3"],
)
def test_a_strategy_that_reads_later_bars_fails_with_lookahead_bias(strategy, params, seed):
    candles = synthetic(12_000, seed)
    with pytest.raises(LookaheadBias) as raised:
        bias.check(strategy, candles, params, seed=seed)
    error = raised.value
    assert error.params == params and error.time == iso(candles, error.bar)
    message = str(error)
    assert f"the position at {error.time} (bar {error.bar}) changed" in message
    assert strategy.name in message and str(params) in message and "shift(-1)" in message
    # Independently: the position at that bar does depend on later bars.
    assert depends_on_later_bars(strategy, candles, params, error.bar)


def test_lookahead_is_caught_whichever_seed_picks_the_bars():
    candles = synthetic(5_000, 9)
    for seed in range(10):
        with pytest.raises(LookaheadBias):
            bias.check_lookahead(NEXT_CLOSE, candles, {}, seed=seed)


def test_lookahead_on_a_slice_reports_the_bar_in_the_data_checked():
    """The reported bar is an index of the data given, whatever slice the check computed on:
    for shift(-1) only the bar t itself can change, so it is one of the bars tried."""
    candles = synthetic(40_000, 6)
    with pytest.raises(LookaheadBias) as raised:
        bias.check_lookahead(NEXT_CLOSE, candles, {}, seed=3)
    bar = raised.value.bar
    assert bar > bias.SPAN  # past the first slice: the index was mapped back to the data
    assert depends_on_later_bars(NEXT_CLOSE, candles, {}, bar)
    assert raised.value.time == iso(candles, bar)


# --- a short warm-up is caught -----------------------------------------------------------------


def test_a_recursive_indicator_declaring_one_bar_fails_with_warmup_too_short():
    candles = synthetic(8_000, 7)
    params = {"span": 30}
    with pytest.raises(WarmupTooShort) as raised:
        bias.check(EMA_ONE_BAR, candles, params, seed=1)
    error = raised.value
    message = str(error)
    assert error.params == params and error.time == iso(candles, error.bar)
    assert f"the position at {error.time} (bar {error.bar}) changed" in message
    assert "declares 1 bar of warm-up" in message and "ema_one_bar" in message and "{'span': 30}" in message
    needed = int(message.split("declare a warm-up of at least ")[1].split(" bar")[0])
    assert needed > 1
    # Independently: at the bar named, one bar of history and two give different positions.
    first = bar_at(candles, message.split("in front of ")[1].split(" grew")[0])
    one = EMA_ONE_BAR.signals(candles[first - 1 :], params, 1)[error.bar - first + 1]
    two = EMA_ONE_BAR.signals(candles[first - 2 :], params, 2)[error.bar - first + 2]
    assert one != two
    assert EMA_ONE_BAR.signals(candles[first - 1 : error.bar], params, 1)[1:].tolist() == (
        EMA_ONE_BAR.signals(candles[first - 2 : error.bar], params, 2)[2:].tolist()
    )  # and the bar named is the first that differs


def test_a_declared_warm_up_smaller_than_the_window_fails_and_the_exact_one_passes():
    candles = synthetic(6_000, 8)
    params = {"window": 200}
    with pytest.raises(WarmupTooShort) as raised:
        bias.check(SMA_SHORT, candles, params, seed=2)
    message = str(raised.value)
    assert "declares 40 bars of warm-up" in message and "grew from 40 to 80 bars" in message
    # The mean of 200 bars needs 199 before the first: the least doubling of 80 that suffices is 320.
    assert "declare a warm-up of at least 320 bars" in message
    report = bias.check(SMA_EXACT, candles, params, seed=2).as_dict()
    assert report["passed"] and report["warmup"]["declared"] == 199


def test_a_strategy_with_a_state_started_at_start_passes():
    """bollinger_breakout holds band states from `start` on: more history changes nothing."""
    candles = synthetic(20_000, 10)
    report = bias.check(get_strategy("bollinger_breakout"), candles, {"window": 300, "k": 1.0}, seed=3).as_dict()
    assert report["warmup"]["history_lengths"][:2] == [300, 600]


def test_too_few_bars_for_the_warm_up_says_so():
    candles = synthetic(300, 1)
    report = bias.check(get_strategy("sma_crossover"), candles, {"fast": 10, "slow": 400}, seed=1).as_dict()
    assert report["passed"] and report["warmup"]["ranges"] == []
    assert "300 bars is too few" in report["warmup"]["skipped"]


# --- cost: short slices --------------------------------------------------------------------------


class Counting:
    """A strategy that counts the bars each signal computation is given."""

    def __init__(self, inner: Strategy) -> None:
        self.inner, self.name, self.lengths = inner, inner.name, []

    def warmup(self, params):
        return self.inner.warmup(params)

    def signals(self, candles, params, start=0):
        self.lengths.append(len(candles))
        return self.inner.signals(candles, params, start)


def test_the_checks_compute_on_slices_a_handful_of_times():
    n = 200_000
    candles = synthetic(n, 2)
    counting = Counting(get_strategy("sma_crossover"))
    bias.check(counting, candles, {"fast": 20, "slow": 300}, seed=4)
    # Look-ahead: per bar drawn, one real slice and a slice with another future for it and for
    # a bar where the position changes near it; each at most the warm-up, SPAN bars before t,
    # t and twice SPAN after it.
    lookahead = counting.lengths[: 3 * bias.LOOKAHEAD_POINTS // 2]
    assert max(lookahead) <= 300 + bias.SPAN + 1 + 2 * bias.SPAN
    # Warm-up: two slices per range, and all the history in front of the last one.
    warmup = counting.lengths[3 * bias.LOOKAHEAD_POINTS // 2 :]
    assert len(warmup) <= 2 * bias.WARMUP_POINTS + 1 and max(warmup[:-1]) <= 600 + bias.SPAN
    assert warmup[-1] <= n
    # All in all, fewer bars than one and a half computations on the whole data.
    assert sum(counting.lengths) < 1.5 * n


# --- a training run -------------------------------------------------------------------------------


class Hooks:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.saved = 0

    def progress(self, phase, fraction, message, **_):
        self.messages.append(message)

    def completed_trials(self):
        return []

    def save_trial(self, trial):
        self.saved += 1

    def check(self):
        pass


def biased_sma(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """sma_crossover's positions, with tomorrow's close in the fast mean: trades, and looks good."""
    fast = ind.Rolling(np.r_[c.close[1:], c.close[-1]]).mean(p["fast"])
    slow = ind.Rolling(c.close).mean(p["slow"])
    return _sign(fast - slow, slow)


@pytest.mark.parametrize("mode", ["holdout", "walk_forward"])
def test_a_training_run_with_a_biased_strategy_fails_after_optimising(monkeypatch, mode):
    crossover = get_strategy("sma_crossover")
    biased = Strategy("biased_sma", crossover.space, biased_sma, crossover.warmup, crossover.constraint)
    monkeypatch.setitem(installed(), "biased_sma", biased)
    spec = TrainingSpec("biased_sma", "X", "5m", 8, 3, min_trades=3, validation_mode=mode, windows=3)
    hooks = Hooks()
    with pytest.raises(LookaheadBias) as raised:
        run_training(spec, synthetic(6_000, 4, timeframe="5m"), hooks)
    assert hooks.saved == spec.total_iterations  # it optimised, then the check refused the result
    assert "checking the chosen parameters for look-ahead and warm-up bias" in hooks.messages
    assert "biased_sma" in str(raised.value) and "fast" in str(raised.value)


def test_a_training_run_reports_the_checks_it_passed():
    spec = TrainingSpec("rsi_reversion", "X", "5m", 6, 2, min_trades=3, validation_mode="walk_forward", windows=3)
    outcome = run_training(spec, synthetic(6_000, 4, timeframe="5m"), Hooks())
    checks = outcome.bias_checks
    assert checks["passed"] is True
    distinct = {tuple(sorted(w["params"].items())) for w in outcome.windows}
    assert checks["params_checked"] == len(distinct) >= 1
    assert len(checks["lookahead"]["bars_tried"]) == bias.LOOKAHEAD_POINTS * len(distinct)
    assert checks["seconds"] > 0


def test_the_errors_are_training_input_errors():
    """So a job fails without a retry (the job handler maps them by name)."""
    from app.engine.errors import TrainingInputError

    assert issubclass(LookaheadBias, StrategyBias) and issubclass(WarmupTooShort, StrategyBias)
    assert issubclass(StrategyBias, TrainingInputError)
