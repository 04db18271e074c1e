"""A plain per-bar backtest loop with cash and a quantity: the specification the vectorised
backtester must match (see app/engine/backtest.py for the model)."""

from __future__ import annotations

import math

from app.engine.backtest import Costs
from app.engine.candles import Candles


def reference_backtest(candles: Candles, positions, costs: Costs, exits=None):
    """Returns (equity per bar, trades as (entry bar, exit bar, side, return)). `exits[i]`, where
    not NaN, is a stop price at which the position held during bar i is closed within it."""
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
        if qty != 0 and exits is not None and not math.isnan(exits[i]):  # the stop fills within the bar
            if cash + qty * exits[i] <= 0:
                trades.append((entry_bar, i + 1, side, -1.0))
                ruined = True
                equity.append(0.0)
                continue
            close_out(exits[i])
            if cash <= 0:
                trades.append((entry_bar, i + 1, side, -1.0))
                ruined = True
                equity.append(0.0)
                continue
            trades.append((entry_bar, i + 1, side, cash / entry_equity - 1.0))
            side = 0.0
            equity.append(cash)
            continue
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


def reference_liquidity_sweep(candles: Candles, lookback: int, stop_pct: float, max_hold: int, start: int = 0):
    """liquidity_sweep bar by bar, as a trader would run it: (positions, stop exit prices)."""
    n, stop = len(candles), stop_pct / 100.0
    positions, exits = [0] * n, [math.nan] * n
    side, sweep_bar, level = 0, -1, 0.0  # the position held during bar i, its sweep bar, its stop
    for i in range(n):
        after = 0  # the position decided on this bar's close
        if side != 0:
            if i == sweep_bar + 1:  # entered at this bar's open: the stop rests from the entry price
                level = candles.open[i] * (1 + stop if side < 0 else 1 - stop)
            if side < 0 and candles.high[i] >= level:
                exits[i] = max(level, candles.open[i])
            elif side > 0 and candles.low[i] <= level:
                exits[i] = min(level, candles.open[i])
            elif i - sweep_bar < max_hold and i < n - 1:
                after = side  # held on; otherwise out at the next open
        if side == 0 and i >= start and i >= lookback and i + 1 < n:  # flat, and no trade ended here
            prior_high, prior_low = max(candles.high[i - lookback : i]), min(candles.low[i - lookback : i])
            if candles.high[i] > prior_high and candles.close[i] < prior_high:
                after, sweep_bar = -1, i
            elif candles.low[i] < prior_low and candles.close[i] > prior_low:
                after, sweep_bar = 1, i
        positions[i] = after
        side = after
    return positions, exits
