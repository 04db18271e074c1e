"""A plain per-bar backtest loop with cash and a quantity: the specification the vectorised
backtester must match (see app/engine/backtest.py for the model)."""

from __future__ import annotations

from app.engine.backtest import Costs
from app.engine.candles import Candles


def reference_backtest(candles: Candles, positions, costs: Costs):
    """Returns (equity per bar, trades as (entry bar, exit bar, side, return))."""
    c, n = costs.per_side, len(candles)
    cash, qty, side = 1.0, 0.0, 0.0
    equity, trades = [], []
    entry_bar, entry_equity, ruined = 0, 1.0, False

    def close_out(price: float) -> None:
        nonlocal cash, qty
        cash += qty * price - c * abs(qty) * price
        qty = 0.0

    for i in range(n):
        if ruined:
            equity.append(0.0)
            continue
        target = float(positions[i - 1]) if i > 0 else 0.0
        if qty != 0 and cash + qty * candles.open[i] <= 0:  # marked at the open: ruin
            trades.append((entry_bar, i, side, -1.0))
            ruined = True
            equity.append(0.0)
            continue
        if target != side:
            if qty != 0:
                close_out(candles.open[i])
                if cash <= 0:  # the exit's cost took the rest
                    trades.append((entry_bar, i, side, -1.0))
                    ruined = True
                    equity.append(0.0)
                    continue
                trades.append((entry_bar, i, side, cash / entry_equity - 1.0))
            if target != 0:
                entry_bar, entry_equity = i, cash
                qty = target * cash / candles.open[i]
                cash -= qty * candles.open[i] + c * abs(qty) * candles.open[i]
            side = target
        value = cash + qty * candles.close[i]
        if qty != 0 and value <= 0:  # marked at the close: ruin
            trades.append((entry_bar, i + 1, side, -1.0))
            ruined = True
            value = 0.0
        equity.append(value)
    if qty != 0 and not ruined:  # the backtest ends flat: close out at the last close
        close_out(candles.close[-1])
        if cash <= 0:
            trades.append((entry_bar, n, side, -1.0))
            equity[-1] = 0.0
        else:
            trades.append((entry_bar, n, side, cash / entry_equity - 1.0))
            equity[-1] = cash
    return equity, trades
