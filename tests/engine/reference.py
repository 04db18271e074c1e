"""A plain per-bar backtest loop: the specification the vectorised backtester must match."""

from __future__ import annotations

from app.engine.backtest import Costs
from app.engine.candles import Candles


def reference_backtest(candles: Candles, positions, costs: Costs):
    """Returns (equity per bar, trades as (entry bar, exit bar, side, return))."""
    equity, value, held = [], 1.0, 0.0
    trades, entry_bar, entry_price = [], None, None
    n = len(candles)
    for i in range(n):
        target = float(positions[i - 1]) if i > 0 else 0.0
        prev_close = candles.close[i - 1] if i > 0 else candles.open[0]
        value *= 1.0 + held * (candles.open[i] / prev_close - 1.0)  # overnight gap with the old position
        if target != held:
            value *= 1.0 - abs(target - held) * costs.per_side
            if held != 0:
                ret = held * (candles.open[i] / entry_price - 1.0) - 2 * costs.per_side
                trades.append((entry_bar, i, held, ret))
            if target != 0:
                entry_bar, entry_price = i, candles.open[i]
            held = target
        value *= 1.0 + held * (candles.close[i] / candles.open[i] - 1.0)
        equity.append(value)
    if held != 0:
        trades.append((entry_bar, n, held, held * (candles.close[-1] / entry_price - 1.0) - 2 * costs.per_side))
    return equity, trades
