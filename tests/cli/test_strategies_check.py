"""`trad strategies check`: the bias checks on stored candles from the command line. Exit 0
when they pass, 1 when a bias is found (naming the bar and the parameters), 2 for bad input
(naming the argument). Passing runs are a real subprocess; a biased strategy is registered in
this process, so that run calls the command's entry point here."""

from __future__ import annotations

import json

import pytest

from app import cli
from app.engine.registry import get_strategy
from app.engine.registry import strategies as installed
from app.engine.strategy import Strategy
from app.services import candles as candles_service
from tests.cli.test_commands import trad
from tests.training.test_bias import BIASED


@pytest.fixture
def stored(db):
    candles_service.generate_synthetic(db, "BTCUSDT", "5m", 6_000, seed=2)
    db.commit()


def test_a_built_in_strategy_passes_with_given_and_drawn_parameters(clean, stored):
    given = trad(clean, "strategies", "check", "sma_crossover", "--symbol", "BTCUSDT", "--timeframe", "5m",
                 "--params", '{"fast": 10, "slow": 60}')  # fmt: skip
    assert given.returncode == 0, given.stderr
    lines = given.stdout.splitlines()
    assert lines[0] == "sma_crossover on 6000 5m bars of BTCUSDT"
    assert lines[1].startswith("passed {'fast': 10, 'slow': 60}: look-ahead at ")
    assert "warm-up of 60 bars against 60, 120, " in lines[1]
    drawn = trad(clean, "strategies", "check", "rsi_reversion", "--symbol", "BTCUSDT", "--timeframe", "5m",
                 "--start", "2023-01-05", "--end", "2023-01-15")  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    assert lines[0] == f"rsi_reversion on {10 * 288} 5m bars of BTCUSDT"  # 10 days of 5m bars
    assert len(lines) == 4 and all(line.startswith("passed {'period': ") for line in lines[1:])


def test_a_resampled_timeframe_is_checked_too(clean, db):
    candles_service.generate_synthetic(db, "ETHUSDT", "1m", 6_000, seed=3)
    db.commit()
    done = trad(clean, "strategies", "check", "bollinger_breakout", "--symbol", "ETHUSDT", "--timeframe", "15m",
                "--params", '{"window": 20, "k": 2}')  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "bollinger_breakout on 400 15m bars of ETHUSDT"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_strategy"], "NAME: unknown strategy 'no_such_strategy'"),
        (["sma_crossover", "--params", "{fast: 1}"], "--params: not JSON"),
        (["sma_crossover", "--params", "[1, 2]"], "--params: must be a JSON object"),
        (["sma_crossover", "--params", '{"fast": 50, "slow": 10}'], "--params: fast must be less than slow"),
        (["sma_crossover", "--params", '{"fast": 5}'], "--params: missing parameter(s) for sma_crossover: slow"),
        (["sma_crossover", "--params", '{"fast": 5, "slow": 9, "x": 1}'], "--params: unknown parameter(s)"),
        (["sma_crossover", "--params", '{"fast": 5, "slow": 99999}'], "--params: parameter 'slow' must be between"),
        (["sma_crossover", "--params", '{"fast": "5", "slow": 9}'], "--params: parameter 'fast' must be an integer"),
        (["sma_crossover", "--symbol", "NOPEUSDT"], "--symbol: no 5m candles for NOPEUSDT"),
        (["sma_crossover", "--symbol", "btc-usdt"], "argument --symbol: symbol must be"),
        (["sma_crossover", "--timeframe", "7m"], "argument --timeframe: invalid choice"),
        (["sma_crossover", "--start", "yesterday"], "argument --start: not a date or time"),
        (["sma_crossover", "--start", "2023-01-10", "--end", "2023-01-05"], "--end: must be after --start"),
        (["sma_crossover", "--start", "2030-01-01"], "--symbol: no 5m candles for BTCUSDT in that range"),
        (["sma_crossover", "--seed", "x"], "argument --seed: invalid int value"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(clean, stored, args, message):
    argv = ["strategies", "check", *args]
    for flag, value in (("--symbol", "BTCUSDT"), ("--timeframe", "5m")):
        if flag not in argv:
            argv += [flag, value]
    done = trad(clean, *argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert "passed" not in done.stdout


def test_missing_name_or_symbol_exits_2(clean):
    assert trad(clean, "strategies", "check", "--symbol", "BTCUSDT", "--timeframe", "5m").returncode == 2
    done = trad(clean, "strategies", "check", "sma_crossover", "--timeframe", "5m")
    assert done.returncode == 2 and "--symbol" in done.stderr


@pytest.mark.parametrize(
    ("strategy", "params", "error_type"),
    [
        ("tomorrows_crossover", {"fast": 10, "slow": 60}, "LookaheadBias"),
        ("ema_one_bar", {"span": 20}, "WarmupTooShort"),
    ],
)
def test_a_biased_strategy_exits_1_naming_the_bar_and_the_parameters(
    clean, stored, monkeypatch, capsys, strategy, params, error_type
):
    for name, biased in BIASED.items():
        monkeypatch.setitem(installed(), name, biased)
    monkeypatch.setattr(cli, "get_settings", lambda: clean)
    argv = ["strategies", "check", strategy, "--symbol", "BTCUSDT", "--timeframe", "5m", "--params", json.dumps(params)]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{strategy} on 6000 5m bars of BTCUSDT"
    assert out[1].startswith(f"FAILED {error_type} at ") and str(params) in out[1]
    when, bar = out[1].split(" at ", 1)[1].split(": ", 1)[0].split(" (bar ")
    assert f"the position at {when} (bar {bar.rstrip(')')}) changed" in out[1]


def test_without_params_a_biased_strategy_fails_on_the_first_drawn_set(clean, stored, monkeypatch, capsys):
    crossover = get_strategy("sma_crossover")
    biased = Strategy("tomorrows_crossover", crossover.space, BIASED["tomorrows_crossover"].compute,
                      crossover.warmup, crossover.constraint)  # fmt: skip
    monkeypatch.setitem(installed(), "tomorrows_crossover", biased)
    monkeypatch.setattr(cli, "get_settings", lambda: clean)
    assert cli.main(["strategies", "check", "tomorrows_crossover", "--symbol", "BTCUSDT", "--timeframe", "5m"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("FAILED LookaheadBias")


def test_a_strategy_that_raises_exits_2_naming_it(clean, stored, monkeypatch, capsys):
    """Its own error, with the traceback, is bad input (2), never a bias found (1)."""

    def broken(c, p, start):
        raise ZeroDivisionError("the strategy divided by zero")

    monkeypatch.setitem(installed(), "broken", Strategy("broken", (), broken, lambda p: 1))
    monkeypatch.setattr(cli, "get_settings", lambda: clean)
    argv = ["strategies", "check", "broken", "--symbol", "BTCUSDT", "--timeframe", "5m", "--params", "{}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "trad: error: broken with parameters {} raised ZeroDivisionError" in err
