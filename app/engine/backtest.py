"""The vectorised backtester: the hot loop of optimisation.

Semantics (the reference loop in the tests implements the same, bar by bar):
- `positions[t]` ∈ {-1, 0, +1} is decided on bar t's close and filled at bar t+1's open, so
  the position held during bar i is `held[i] = positions[i-1]` (flat on bar 0).
- Over bar i, the position held before the open earns the gap close[i-1]→open[i]; then the
  trade (if any) is filled at open[i], paying (fee_bps + slippage_bps)·|held[i] − held[i−1]|
  (a flip long→short pays two sides); then the new position earns open[i]→close[i]. A short
  earns the negative of the price return of each such segment.
- Equity starts at 1 and is marked to market at every close.
- A trade is a maximal run of bars holding the same non-zero position, entered at the open
  of its first bar and left at the open of the bar after its last (or at the last close if
  still open at the end). Its return is side·(exit/entry − 1) minus both sides' costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.candles import Candles


@dataclass(frozen=True)
class Costs:
    fee_bps: float = 10.0
    slippage_bps: float = 2.0

    @property
    def per_side(self) -> float:
        return (self.fee_bps + self.slippage_bps) / 10_000.0


@dataclass
class BacktestResult:
    metrics: dict[str, float | int]
    equity: np.ndarray
    open_time: np.ndarray
    trades: dict[str, np.ndarray] = field(repr=False)

    def equity_curve(self, max_points: int = 500) -> list[list[float]]:
        n = len(self.equity)
        if n == 0:
            return []
        idx = np.unique(np.linspace(0, n - 1, min(max_points, n)).astype(np.int64))
        return [[int(self.open_time[i]), round(float(self.equity[i]), 8)] for i in idx]


def held_positions(positions: np.ndarray) -> np.ndarray:
    held = np.zeros(len(positions), dtype=np.float64)
    held[1:] = positions[:-1]
    return held


def bar_factors(candles: Candles, positions: np.ndarray, costs: Costs) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar equity growth factors and the held positions."""
    held = held_positions(positions)
    prev_held = np.r_[0.0, held[:-1]]
    prev_close = np.r_[candles.open[0], candles.close[:-1]]
    gap = 1.0 + prev_held * (candles.open / prev_close - 1.0)
    cost = 1.0 - np.abs(held - prev_held) * costs.per_side
    intrabar = 1.0 + held * (candles.close / candles.open - 1.0)
    return gap * cost * intrabar, held


def trades(candles: Candles, held: np.ndarray, costs: Costs) -> dict[str, np.ndarray]:
    n = len(held)
    change = np.flatnonzero(np.diff(np.r_[0.0, held, 0.0]))  # run boundaries incl. a final close-out
    starts, ends = change[:-1], change[1:]
    side = held[starts] if n else np.array([])
    keep = side != 0
    starts, ends, side = starts[keep], ends[keep], side[keep]
    entry = candles.open[starts]
    exit_price = np.where(ends < n, candles.open[np.minimum(ends, n - 1)], candles.close[-1] if n else 0.0)
    ret = side * (exit_price / entry - 1.0) - 2 * costs.per_side
    return {"entry": starts, "exit": ends, "side": side, "entry_price": entry, "exit_price": exit_price, "ret": ret}


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def backtest(candles: Candles, positions: np.ndarray, costs: Costs = Costs()) -> BacktestResult:
    n = len(candles)
    if n == 0:
        raise ValueError("no candles to backtest")
    factors, held = bar_factors(candles, positions, costs)
    equity = np.cumprod(factors)
    returns = factors - 1.0
    bars_per_year = candles.bars_per_year
    total = equity[-1] - 1.0
    years = n / bars_per_year
    with np.errstate(over="ignore"):
        cagr = float(np.float64(equity[-1]) ** (1.0 / years)) - 1.0 if equity[-1] > 0 else -1.0
    sd = returns.std()
    sharpe = returns.mean() / sd * math.sqrt(bars_per_year) if sd > 0 else 0.0
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    max_dd = float(np.max(1.0 - equity / peak))
    t = trades(candles, held, costs)
    n_trades = len(t["ret"])
    metrics: dict[str, Any] = {
        "total_return": _finite(total),
        "cagr": _finite(cagr),
        "sharpe": _finite(sharpe),
        "max_drawdown": _finite(max_dd),
        "calmar": _finite(cagr / max_dd) if max_dd > 0 else 0.0,
        "win_rate": _finite(float(np.mean(t["ret"] > 0))) if n_trades else 0.0,
        "n_trades": int(n_trades),
        "exposure": _finite(float(np.mean(held != 0))),
        "n_bars": int(n),
    }
    return BacktestResult(metrics=metrics, equity=equity, open_time=candles.open_time, trades=t)
