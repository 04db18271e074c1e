"""Strategies: each a typed parameter space and a function from candles to desired positions.

`signals(candles, params, start)` returns an int8 array in {-1, 0, +1}: the position wanted
from the next bar's open, decided on bar t's close with data up to bar t only (no look-ahead).
Comparisons that decide a signal treat differences within rounding (`indicators.sign`) as
ties, so equal prices never trade.

Warm-up: every strategy declares, for given parameters, how many bars of history its
indicators need before the first bar it may trade (`warmup`). The bars before `start` are
history only: the strategy is flat there, and a strategy that holds a state between events
(band entries held until an exit, a sweep held until its stop) begins that state flat at
`start`, acting only on events from `start` on, as a live run started there would. So the
positions on `[start, end)` are the same whatever history lies in front, once it is at least
the warm-up (`range_positions` gives exactly that history; tests check more changes nothing).

They are registered like any package's strategies, under the `trad.strategies` entry points of
trad's own `pyproject.toml` (`registry`), so `get_strategy` finds them the one way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.engine import indicators as ind
from app.engine.candles import Candles
from app.engine.errors import InvalidParams
from app.engine.strategy import FloatParam, IntParam, Strategy


def _rolling_close(c: Candles) -> ind.Rolling:
    return c.memo("rolling_close", lambda: ind.Rolling(c.close))


def _sma_crossover(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    return _rolling_close(c).crossover(p["fast"], p["slow"])


def _band_events(
    close: np.ndarray, upper: np.ndarray, lower: np.ndarray, mid: np.ndarray, breakout: bool, start: int
) -> np.ndarray:
    """Entry events at band crossings, exit events when price crosses `mid`, held in between;
    the state starts flat at `start` and only events from there on count."""
    events = np.full(len(close), np.nan)
    side = ind.sign(close - mid, mid)
    crossed_mid = side != ind.shift(side)
    events[crossed_mid & ~np.isnan(mid)] = 0.0
    above, below = ind.sign(close - upper, upper) > 0, ind.sign(close - lower, lower) < 0
    long_entry, short_entry = (above, below) if breakout else (below, above)
    events[long_entry] = 1.0
    events[short_entry] = -1.0
    out = np.zeros(len(close))
    out[start:] = ind.hold_states(events[start:])
    return out


def _bollinger_breakout(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """`_bollinger_breakout_numpy` (below), the same states, in one compiled pass."""
    return _rolling_close(c).bollinger_states(p["window"], p["k"], start)


def _bollinger_breakout_numpy(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    close = _rolling_close(c)
    mid, sd = close.mean(p["window"]), close.std(p["window"])
    return _band_events(c.close, mid + p["k"] * sd, mid - p["k"] * sd, mid, breakout=True, start=start)


def _rsi_reversion(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    """`_rsi_reversion_numpy` (below), the same states, in one compiled pass."""
    moves = c.memo("gains_and_losses", lambda: ind.gains_and_losses(c.close))
    return ind.rsi_states(moves, p["period"], p["upper"], p["lower"], start)


def _rsi_reversion_numpy(c: Candles, p: dict[str, Any], start: int) -> np.ndarray:
    r = ind.rsi(c.close, p["period"], c.memo("gains_and_losses", lambda: ind.gains_and_losses(c.close)))
    fifty = np.where(np.isnan(r), np.nan, 50.0)
    return _band_events(r, np.full(len(r), p["upper"]), np.full(len(r), p["lower"]), fifty, False, start)


def _liquidity_sweep(c: Candles, p: dict[str, Any], start: int) -> tuple[np.ndarray, np.ndarray]:
    """`_liquidity_sweep_numpy` (below), the same positions and exits, in one compiled pass."""
    from app.engine import kernel  # numba loads on the first use, not with the strategies

    n = len(c)
    positions, exits = np.empty(n, dtype=np.int8), np.empty(n)
    stop = p["stop_pct"] / 100.0
    if p["lookback"] < 1 or p["max_hold"] < 1:  # the compiled loop checks no bounds
        raise InvalidParams("lookback and max_hold must be at least 1")
    kernel.sweep(c.open, c.high, c.low, c.close, int(p["lookback"]), stop, int(p["max_hold"]), start, positions, exits)
    return positions, exits


def _liquidity_sweep_numpy(c: Candles, p: dict[str, Any], start: int) -> tuple[np.ndarray, np.ndarray]:
    """A bar trades beyond the prior `lookback`-bar high (low) and closes back inside: take the
    reversal at the next open. A stop rests `stop_pct` beyond the entry price: the trade is
    closed within the first bar whose high (low) reaches it, at the stop, or at that bar's open
    if the bar opened beyond it (a gap fills at the open, the worse price). Otherwise the trade
    is closed at the open after `max_hold` bars. Only sweeps from `start` on are traded."""
    lookback, stop, max_hold = p["lookback"], p["stop_pct"] / 100.0, p["max_hold"]
    prior_high, prior_low = ind.shift(ind.rolling_max(c.high, lookback)), ind.shift(ind.rolling_min(c.low, lookback))
    with np.errstate(invalid="ignore"):
        short_sweep = (c.high > prior_high) & (c.close < prior_high)
        long_sweep = (c.low < prior_low) & (c.close > prior_low)
    entries = np.flatnonzero(short_sweep | long_sweep)
    entries = entries[entries >= start]
    n = len(c)
    pos = np.zeros(n, dtype=np.int8)
    exits = np.full(n, np.nan)
    busy_until = -1
    for t in entries:
        if t <= busy_until:
            continue
        if t + 1 >= n:  # no bar left to enter on
            break
        side = -1 if short_sweep[t] else 1
        entry = c.open[t + 1]
        end = min(t + max_hold, n - 1)
        window = slice(t + 1, end + 1)
        if side == -1:
            level = entry * (1 + stop)
            hits = np.flatnonzero(c.high[window] >= level)
        else:
            level = entry * (1 - stop)
            hits = np.flatnonzero(c.low[window] <= level)
        if len(hits):
            hit = t + 1 + int(hits[0])
            pos[t:hit] = side
            exits[hit] = max(level, c.open[hit]) if side == -1 else min(level, c.open[hit])
            busy_until = hit
        else:
            pos[t:end] = side
            busy_until = end
    return pos, exits


sma_crossover = Strategy(
    "sma_crossover",
    (IntParam("fast", 2, 200, default=10), IntParam("slow", 5, 1000, default=50)),
    _sma_crossover,
    lambda p: int(p["slow"]),  # the slow mean needs slow − 1 bars before the first
    lambda p: None if p["fast"] < p["slow"] else "fast must be less than slow",
)
rsi_reversion = Strategy(
    "rsi_reversion",
    (
        IntParam("period", 2, 100, default=14),
        FloatParam("lower", 5, 45, default=30),
        FloatParam("upper", 55, 95, default=70),
    ),
    _rsi_reversion,
    lambda p: int(p["period"]) + 1,  # period moves need period + 1 closes; the mid cross one more
)
bollinger_breakout = Strategy(
    "bollinger_breakout",
    (IntParam("window", 5, 500, default=20), FloatParam("k", 0.5, 4.0, default=2.0)),
    _bollinger_breakout,
    lambda p: int(p["window"]),  # the band needs window − 1 bars; the mid cross one more
)
liquidity_sweep = Strategy(
    "liquidity_sweep",
    (
        IntParam("lookback", 5, 500, default=20),
        FloatParam("stop_pct", 0.1, 10.0, default=1.0),
        IntParam("max_hold", 1, 1000, default=20),
    ),
    _liquidity_sweep,
    lambda p: int(p["lookback"]),  # the prior lookback-bar extreme
)

# trad's own strategies, as its entry points name them (`pyproject.toml`).
STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (sma_crossover, rsi_reversion, bollinger_breakout, liquidity_sweep)
}


def get_strategy(name: str) -> Strategy:
    """The installed strategy `name` (the registry's), or UnknownStrategy."""
    from app.engine import registry  # the registry loads this module through its entry points

    return registry.get_strategy(name)
