"""Buy-and-hold over the same bars with the same costs, and a strategy's excess over it."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.engine.backtest import BacktestResult, Costs, backtest
from app.engine.candles import Candles

EXCESS_KEYS = ("total_return", "sharpe")


def buy_and_hold(candles: Candles, costs: Costs) -> BacktestResult:
    """Long from the first fill (the second bar's open, as any signal) to the end."""
    return backtest(candles, np.ones(len(candles), dtype=np.int8), costs)


def excess(strategy: dict[str, Any], benchmark: dict[str, Any]) -> dict[str, float | None]:
    """Strategy minus buy-and-hold for each of EXCESS_KEYS; None where either is undefined."""
    out: dict[str, float | None] = {}
    for key in EXCESS_KEYS:
        a, b = strategy.get(key), benchmark.get(key)
        out[key] = float(a) - float(b) if a is not None and b is not None else None
    return out
