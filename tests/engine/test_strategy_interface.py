"""The strategy interface (`app.engine.strategy`) and the registry's checks of what a package
declares: parameters, narrowing, the optimiser's mapping of the space, and what a package's
signals may return."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import numpy as np
import optuna
import pytest

from app.engine import registry
from app.engine.backtest import Costs
from app.engine.candles import synthetic
from app.engine.errors import InvalidParams, InvalidPositions, StrategyError, StrategyUnavailable, UnknownStrategy
from app.engine.optimise import _distributions, optimise
from app.engine.strategy import CategoricalParam, FloatParam, IntParam, vectorised
from tests.support import ROOT


def _momentum(candles, params):
    change = candles.close - np.roll(candles.close, params["lag"])
    change[: params["lag"]] = 0
    side = np.sign(change)
    return np.where(side < 0, 0, side) if params["side"] == "long" else side


MOMENTUM = vectorised(
    name="momentum",
    space=(
        IntParam("lag", 1, 20, default=5),
        FloatParam("scale", 0.001, 1.0, log=True),
        CategoricalParam("side", ("both", "long")),
    ),
    warmup=lambda p: p["lag"],
)(_momentum)
NOT_A_STRATEGY = object()


def test_parameters_validate_their_values_and_default_inside_the_space():
    lag, scale, side = MOMENTUM.space
    assert (lag.default, side.default) == (5, "both")
    assert scale.default == pytest.approx(np.sqrt(0.001))  # the geometric middle of a log range
    assert lag.validate(3.0) == 3 and scale.validate(1) == 1.0 and side.validate("long") == "long"
    for param, bad, words in [
        (lag, 2.5, "an integer"),
        (lag, "3", "an integer"),
        (lag, 21, "between 1 and 20"),
        (scale, float("nan"), "a number"),
        (scale, True, "a number"),
        (side, "short", "one of"),
        (side, 1, "one of"),
    ]:
        with pytest.raises(InvalidParams, match=words):
            param.validate(bad)


def test_samples_are_inside_the_space():
    rng = np.random.default_rng(1)
    draws = [{p.name: p.sample(rng) for p in MOMENTUM.space} for _ in range(200)]
    for params in draws:
        assert MOMENTUM.validate_params(params) == params
    assert {d["side"] for d in draws} == {"both", "long"}
    assert sum(d["scale"] < 0.0316 for d in draws) > 60  # half the decades lie below the geometric middle


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: IntParam("n", 5, 1), "low 5 is above high 1"),
        (lambda: FloatParam("x", 0.0, 1.0, log=True), "log-scaled range must start above 0"),
        (lambda: CategoricalParam("c", ()), "choices"),
        (lambda: IntParam("n", 1, 5, default=9), "between 1 and 5"),
        (lambda: IntParam("not a name", 1, 5), "identifier"),
    ],
)
def test_bad_declarations_are_refused(make, words):
    with pytest.raises(InvalidParams, match=words):
        make()


def test_narrowing_fixes_or_narrows_each_parameter_and_refuses_what_is_outside():
    narrowed = MOMENTUM.narrowed({"lag": 7, "scale": {"low": 0.01}, "side": {"choices": ["long"]}})
    lag, scale, side = narrowed.space
    assert (lag.low, lag.high, lag.fixed) == (7, 7, True)
    assert (scale.low, scale.high, scale.log) == (0.01, 1.0, True)
    assert side.choices == ("long",) and side.default == "long"
    assert narrowed.max_warmup == 7 and MOMENTUM.max_warmup == 20
    with pytest.raises(InvalidParams, match="'side' must be one of"):
        MOMENTUM.narrowed({"side": {"choices": ["short"]}})
    with pytest.raises(InvalidParams, match="unknown parameter 'x'"):
        MOMENTUM.narrowed({"x": 1})


def test_the_optimiser_searches_log_floats_and_categoricals_within_the_narrowed_space():
    dists = _distributions(MOMENTUM)
    assert isinstance(dists["scale"], optuna.distributions.FloatDistribution) and dists["scale"].log
    assert dists["side"].choices == ("both", "long")
    narrowed = MOMENTUM.narrowed({"side": "long", "lag": {"low": 3, "high": 6}})
    trials = []
    optimise(
        synthetic(2000, 1),
        narrowed,
        n_iterations=15,
        seed=1,
        objective="total_return",
        costs=Costs(0, 0),
        completed=[],
        on_trial=trials.append,
    )
    assert len(trials) == 15
    assert all(t.params["side"] == "long" and 3 <= t.params["lag"] <= 6 for t in trials)
    scales = [t.params["scale"] for t in trials]
    assert all(0.001 <= s <= 1.0 for s in scales) and min(scales) < 0.03  # log scale reaches the low decades


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (lambda c, p: 1 / 0, StrategyError, "broken's signals raised ZeroDivisionError"),
        (lambda c, p: np.zeros(len(c) + 1), InvalidPositions, "shape"),
        (lambda c, p: np.full(len(c), 0.5), InvalidPositions, "position at bar 0 is 0.5"),
        (lambda c, p: np.where(np.arange(len(c)) == 9, np.nan, 0.0), InvalidPositions, "bar 9 is nan"),
        (lambda c, p: "long", InvalidPositions, "shape"),
        (lambda c, p: np.array(["1"] * len(c)), InvalidPositions, "dtype"),
    ],
)
def test_what_a_package_returns_is_checked(body, error, words):
    broken = vectorised(name="broken", space=(IntParam("n", 1, 2),), warmup=lambda p: 0)(body)
    with pytest.raises(error, match=words):
        broken.signals(synthetic(300, 1), {"n": 1})


def test_a_package_positions_are_flat_before_start_and_int8():
    positions = MOMENTUM.signals(synthetic(500, 2), MOMENTUM.defaults, 100)
    assert positions.dtype == np.int8 and not positions[:100].any() and positions[100:].any()


def test_a_warmup_or_constraint_that_raises_is_the_strategy_s_error():
    bad = vectorised(
        name="bad", space=(IntParam("n", 1, 2),), warmup=lambda p: p["nope"], constraint=lambda p: p["nope"]
    )(_momentum)
    with pytest.raises(StrategyError, match="bad's warmup raised KeyError"):
        bad.warmup({"n": 1})
    with pytest.raises(StrategyError, match="bad's constraint raised KeyError"):
        bad.validate_params({"n": 1})


def _entry(name: str, attr: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=f"tests.engine.test_strategy_interface:{attr}", group=registry.GROUP)


def test_the_registry_checks_what_an_entry_point_declares():
    assert registry._checked(_entry("momentum", "MOMENTUM")).name == "momentum"
    with pytest.raises(TypeError, match="not a Strategy"):
        registry._checked(_entry("thing", "NOT_A_STRATEGY"))
    with pytest.raises(ValueError, match="named 'other' but the strategy 'momentum'"):
        registry._checked(_entry("other", "MOMENTUM"))
    with pytest.raises(AttributeError):
        registry._checked(_entry("momentum", "MISSING"))


def test_builtins_come_from_trads_own_entry_points_with_its_version():
    installed = registry.strategies()
    for name in ("sma_crossover", "rsi_reversion", "bollinger_breakout", "liquidity_sweep"):
        assert installed[name].package == "trad" and installed[name].version == metadata.version("trad")
    with pytest.raises(UnknownStrategy, match="unknown strategy 'moon'"):
        registry.get_strategy("moon")


def test_a_job_needs_the_strategy_at_its_version():
    sma = registry.get_strategy("sma_crossover")
    assert registry.for_job("sma_crossover", "trad", sma.version, "worker w1") is sma
    assert registry.for_job("sma_crossover", None, None, "worker w1") is sma  # a job from before versions
    with pytest.raises(StrategyUnavailable, match=r"worker w1 has sma_crossover .* the job asks for 9\.9"):
        registry.for_job("sma_crossover", "trad", "9.9", "worker w1")
    with pytest.raises(StrategyUnavailable, match=r"worker w1 does not have moon 1\.0"):
        registry.for_job("moon", "moon-pkg", "1.0", "worker w1")


def test_without_trads_own_entry_points_loading_fails_saying_so():
    """A process that cannot see trad's distribution metadata (a release not installed as a
    distribution) refuses to start rather than serve without the built-in strategies."""
    code = (
        "import importlib.metadata as m\n"
        "m.entry_points = lambda **kw: []\n"
        "from app.engine import registry\n"
        "registry.load()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1
    assert "StrategiesMissing: trad's own strategies are not registered" in run.stderr
    assert "install trad as a distribution" in run.stderr


def test_strategies_list_prints_each_with_package_version_warmup_and_parameters():
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "strategies", "list"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "name\tpackage\tversion\twarmup\tparameters"
    sma = next(line for line in lines if line.startswith("sma_crossover\t")).split("\t")
    assert sma == [
        "sma_crossover",
        "trad",
        metadata.version("trad"),
        "50 (max 1000)",
        "fast:int[2,200]=10 slow:int[5,1000]=50",
    ]
