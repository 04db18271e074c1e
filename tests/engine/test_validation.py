"""The default validation tells the truth: warm indicators on every scored range, a holdout that
scores the one configuration chosen on training data, verdicts that tell "no edge" from "does not
survive", a deflated Sharpe ratio that counts every trial, and ruin ranked below everything."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.backtest import Costs, backtest
from app.engine.candles import TIMEFRAMES, Candles, synthetic
from app.engine.optimise import TrialRecord, infeasibility
from app.engine.pipeline import TrainingSpec, run_training
from app.engine.ranges import for_strategy, scored_range
from app.engine.report import DOES_NOT_SURVIVE, NO_EDGE, WORTH_A_CLOSER_LOOK, Evidence, judge
from app.engine.strategies import STRATEGIES, get_strategy
from app.engine.validate import split_at


class Hooks:
    def __init__(self) -> None:
        self.saved: list[TrialRecord] = []

    def progress(self, *args, **kwargs):
        pass

    def completed_trials(self):
        return []

    def save_trial(self, trial):
        self.saved.append(trial)

    def check(self):
        pass


def random_walk(n: int, seed: int, timeframe: str = "5m", sd: float = 0.002) -> Candles:
    """Gaussian log returns with zero mean: no strategy has an edge on it."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sd, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, sd / 4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, sd / 4, n)))
    t = 1_672_531_200_000 + TIMEFRAMES[timeframe] * np.arange(n, dtype=np.int64)
    return Candles(timeframe, t, open_, high, low, close, np.ones(n))


def params_in(strategy_name: str, draw) -> dict:
    """Parameters drawn from the strategy's space (windows up to 300 bars)."""
    strategy = get_strategy(strategy_name)
    if strategy_name == "sma_crossover":
        fast = draw(st.integers(2, 150))
        return {"fast": fast, "slow": draw(st.integers(fast + 1, 300))}
    params = {}
    for spec in strategy.space:
        if spec.kind == "int":
            params[spec.name] = draw(st.integers(int(spec.low), min(int(spec.high), 300)))
        else:
            params[spec.name] = draw(st.floats(spec.low, spec.high))
    return strategy.validate_params(params)


# --- warm-up --------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(STRATEGIES)), data=st.data(), seed=st.integers(0, 10_000))
def test_more_history_in_front_changes_no_position(name, data, seed):
    """The recursive check: positions on a range are the same with the declared warm-up, twice
    it, and all the history there is in front."""
    strategy = get_strategy(name)
    params = params_in(name, data.draw)
    candles = synthetic(3_000, seed)
    warm = strategy.warmup(params)
    first = data.draw(st.integers(min(2 * warm, 2_000), 2_500))
    declared = strategy.range_positions(candles, params, first, 3_000)
    twice = scored_range(candles, first, 3_000, 2 * warm).positions(strategy, params)
    everything = scored_range(candles, first, 3_000, first).positions(strategy, params)
    np.testing.assert_array_equal(declared, twice)
    np.testing.assert_array_equal(declared, everything)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_range_with_history_trades_from_its_first_bars(name):
    """The holdout of a long-window configuration is not left flat while its indicators fill."""
    strategy = get_strategy(name)
    params = {s.name: (s.high if s.kind == "int" else (s.low + s.high) / 2) for s in strategy.space}
    if name == "sma_crossover":
        params = {"fast": 50, "slow": 400}
    params = strategy.validate_params(params)
    candles = synthetic(6_000, 3)
    cold = strategy.signals(candles[5_000:], params)
    warm = strategy.range_positions(candles, params, 5_000, 6_000)
    assert not warm[: strategy.warmup(params)].any() or np.count_nonzero(warm) > np.count_nonzero(cold)
    # sma_crossover is a function of its indicators: warm, it holds a side from the first bar.
    if name == "sma_crossover":
        assert np.count_nonzero(cold[:399]) == 0 and np.all(warm != 0)


def test_holdout_reports_what_the_parameters_make_run_on_from_training():
    """sma_crossover: the holdout figure is the same as one continuous run of the chosen
    parameters over all the bars, scored from the first holdout bar (GOOG's case: a cold holdout
    reported +2.8 % where the run on made −27.6 %)."""
    data = synthetic(8_000, 11, timeframe="5m")
    spec = TrainingSpec("sma_crossover", "X", "5m", 25, 2, min_trades=5)
    outcome = run_training(spec, data, Hooks())
    cut = split_at(len(data), spec.holdout_fraction)
    positions = get_strategy("sma_crossover").signals(data, outcome.params)
    run_on = backtest(data[cut:], positions[cut:], Costs())
    assert outcome.validation_metrics == run_on.metrics


# --- the holdout is touched once -------------------------------------------------------------


def with_other_holdout(data: Candles, cut: int, seed: int) -> Candles:
    """The same training bars, then different holdout bars."""
    other = random_walk(len(data) - cut + 1, seed, data.timeframe)
    scale = data.close[cut - 1] / other.open[0]
    step = TIMEFRAMES[data.timeframe]
    return Candles(
        data.timeframe,
        np.r_[data.open_time[:cut], data.open_time[cut - 1] + step * np.arange(1, len(data) - cut + 1)],
        np.r_[data.open[:cut], other.open[1:] * scale],
        np.r_[data.high[:cut], other.high[1:] * scale],
        np.r_[data.low[:cut], other.low[1:] * scale],
        np.r_[data.close[:cut], other.close[1:] * scale],
        np.r_[data.volume[:cut], other.volume[1:]],
    )


@pytest.mark.parametrize("folds", [0, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_holdout_never_chooses_the_configuration(seed, folds):
    """Replacing the holdout bars changes the reported figures but never the configuration."""
    data = random_walk(4_000, seed)
    spec = TrainingSpec("sma_crossover", "RW", "5m", 40, seed, fee_bps=0, slippage_bps=0, folds=folds)
    cut = split_at(len(data), spec.holdout_fraction)
    chosen = [run_training(spec, with_other_holdout(data, cut, 100 + k), Hooks()).params for k in range(4)]
    assert all(p == chosen[0] for p in chosen), chosen


def test_holdout_sharpe_on_noise_is_what_fresh_bars_give():
    """On Gaussian random walks (true Sharpe 0) the reported out-of-sample Sharpe averages to
    nothing distinguishable from zero, with the spread of the same parameters on as many fresh
    bars. Before the holdout was touched once it averaged +8.9 (t = +7.1) on 48 such walks.
    A fixed set of seeded walks: on other seed sets t ranges over about ±2.4 (the Sharpe ratio of
    a few hundred bars has heavy tails), the fresh bars' t alike."""
    reported, fresh = [], []
    bars = 2_000
    n_fresh = bars - split_at(bars, 0.2)
    for seed in range(60):
        both = random_walk(bars + n_fresh, 7_000 + seed)
        spec = TrainingSpec("sma_crossover", "RW", "5m", 30, seed, fee_bps=0, slippage_bps=0, min_trades=10)
        outcome = run_training(spec, both[:bars], Hooks())
        later = for_strategy(both, bars, bars + n_fresh, get_strategy("sma_crossover"))
        fresh_bt = backtest(later.bars, later.positions(get_strategy("sma_crossover"), outcome.params), Costs(0, 0))
        if outcome.validation_metrics["sharpe"] is not None and fresh_bt.metrics["sharpe"] is not None:
            reported.append(outcome.validation_metrics["sharpe"])
            fresh.append(fresh_bt.metrics["sharpe"])
    assert len(reported) >= 50
    t = statistics.fmean(reported) / (statistics.stdev(reported) / math.sqrt(len(reported)))
    assert abs(t) < 2, (t, statistics.fmean(reported))
    ratio = statistics.stdev(reported) / statistics.stdev(fresh)
    assert 0.6 < ratio < 1.67, ratio


# --- verdicts ---------------------------------------------------------------------------------


def evidence(**overrides) -> Evidence:
    base = dict(
        train={"total_return": 0.30, "sharpe": 1.8},
        train_benchmark={"total_return": 0.10},
        validation={"total_return": 0.08, "sharpe": 1.2},
        validation_benchmark={"total_return": 0.02},
        n_trials=200,
        n_feasible=150,
        deflated_sharpe=0.97,
        dsr_trials=200,
        pbo=0.2,
    )
    return Evidence(**(base | overrides))


def test_a_loser_in_training_is_no_edge_not_overfitted():
    """EURUSD 1h rsi_reversion's case: training Sharpe −0.91, out of sample −3.34."""
    s = judge(
        evidence(train={"total_return": -0.05, "sharpe": -0.91}, validation={"total_return": -0.1, "sharpe": -3.34})
    )
    assert s.kind == NO_EDGE and not s.overfit
    assert s.verdict.startswith("No edge:") and "-0.91" in s.verdict and "200 parameter sets" in s.verdict
    assert "overfit" not in s.verdict.lower()


def test_no_better_than_buy_and_hold_in_training_is_no_edge():
    s = judge(evidence(train={"total_return": 0.05, "sharpe": 0.4}, train_benchmark={"total_return": 0.2}))
    assert s.kind == NO_EDGE and "+20.0%" in s.verdict and "+5.0%" in s.verdict


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"deflated_sharpe": 0.40}, "40%"),
        ({"pbo": 0.7}, "70%"),
        ({"validation": {"total_return": -0.04, "sharpe": -0.5}}, "-4.0%"),
        ({"validation": {"total_return": 0.01, "sharpe": 0.3}}, "less than buying and holding"),
        ({"thin": "only 2 trades out of sample"}, "only 2 trades"),
    ],
)
def test_an_edge_that_does_not_survive_names_the_figure(change, words):
    s = judge(evidence(**change))
    assert s.kind == DOES_NOT_SURVIVE and s.overfit and words in s.verdict, s.verdict


def test_worth_a_closer_look_gives_its_figures():
    s = judge(evidence())
    assert s.kind == WORTH_A_CLOSER_LOOK and not s.overfit and s.reason is None
    assert s.verdict.startswith("Worth a closer look:") and "97%" in s.verdict and "200 parameter sets" in s.verdict


def test_noise_is_never_worth_a_closer_look():
    kinds = set()
    for seed in range(6):
        spec = TrainingSpec("sma_crossover", "RW", "5m", 30, seed, min_trades=10)
        kinds.add(run_training(spec, random_walk(3_000, 900 + seed), Hooks()).statistics["kind"])
    assert kinds <= {NO_EDGE, DOES_NOT_SURVIVE}


def test_the_deflated_sharpe_counts_every_trial_run():
    """Infeasible trials were tried too: N is all of them, not the feasible ones."""
    data = synthetic(6_000, 5, timeframe="5m")
    hooks = Hooks()
    spec = TrainingSpec("sma_crossover", "X", "5m", 40, 1, min_trades=60)
    outcome = run_training(spec, data, hooks)
    s = outcome.statistics
    assert s["n_trials"] == 40 and s["n_feasible"] < 40, s
    assert "40 parameter sets" in s["verdict"]


def test_walk_forward_wording_cites_the_trials_run():
    data = synthetic(12_000, 6, timeframe="5m")
    spec = TrainingSpec("sma_crossover", "X", "5m", 15, 1, min_trades=5, validation_mode="walk_forward", windows=3)
    s = run_training(spec, data, Hooks()).statistics
    assert s["n_trials"] == 45
    assert "45 parameter sets" in s["verdict"] or "(45 in all)" in s["verdict"], s["verdict"]


# --- ruin ---------------------------------------------------------------------------------------


def test_a_ruined_run_is_never_feasible_whatever_the_objective():
    ruined = {"total_return": -1.0, "sharpe": -0.11, "calmar": -1.0, "n_trades": 40}
    heavy_loser = {"total_return": -0.95, "sharpe": -0.79, "calmar": -1.0, "n_trades": 40}
    for objective in ("sharpe", "total_return", "calmar"):
        assert infeasibility(ruined, objective, 30) == "ruined: equity reached zero"
        assert infeasibility(heavy_loser, objective, 30) is None
