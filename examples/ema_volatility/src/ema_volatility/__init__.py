"""An EMA crossover with a volatility filter.

Long while the fast exponential mean of the close is above the slow one, short while below
(or flat, with `mode="long_only"`), and flat whenever the standard deviation of the last
`vol_window` log returns is above `vol_max`: a crossover in a storm is not traded.

Each exponential mean is taken over a finite window of `4 × span` closes (the weights beyond
it are below 0.05 % of the first), so a position depends on a known number of bars and the
declared warm-up is exact: more history in front changes nothing.
"""

from __future__ import annotations

import numpy as np

from app.engine.strategy import CategoricalParam, FloatParam, IntParam, vectorised

SPAN_WINDOWS = 4  # an exponential mean of span s reads the last 4·s closes


def ewma(x: np.ndarray, span: int) -> np.ndarray:
    """Exponentially weighted mean of the last `SPAN_WINDOWS * span` values at each bar (NaN
    before there are that many)."""
    n = SPAN_WINDOWS * span
    weights = (1.0 - 2.0 / (span + 1)) ** np.arange(n)
    weights /= weights.sum()
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = np.convolve(x, weights, mode="valid")  # weights[0] on the newest close
    return out


def volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of the last `window` log returns at each bar (NaN before)."""
    out = np.full(len(close), np.nan)
    returns = np.diff(np.log(close))
    if len(returns) >= window:
        out[window:] = np.lib.stride_tricks.sliding_window_view(returns, window).std(axis=1)
    return out


def warmup(p: dict) -> int:
    return max(SPAN_WINDOWS * int(p["slow"]), int(p["vol_window"]) + 1)


@vectorised(
    name="ema_volatility",
    space=(
        IntParam("fast", 2, 50, default=8),
        IntParam("slow", 5, 100, default=30),
        IntParam("vol_window", 5, 200, default=50),
        FloatParam("vol_max", 0.0005, 0.05, log=True, default=0.01),
        CategoricalParam("mode", ("long_short", "long_only"), default="long_short"),
    ),
    warmup=warmup,
    constraint=lambda p: None if p["fast"] < p["slow"] else "fast must be less than slow",
)
def strategy(candles, params: dict) -> np.ndarray:
    close = candles.close
    fast, slow = ewma(close, params["fast"]), ewma(close, params["slow"])
    with np.errstate(invalid="ignore"):
        positions = np.sign(fast - slow)
        calm = volatility(close, params["vol_window"]) <= params["vol_max"]
    positions[~calm | np.isnan(positions)] = 0.0
    if params["mode"] == "long_only":
        positions[positions < 0] = 0.0
    return positions.astype(np.int8)
