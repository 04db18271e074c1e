"""Causal rolling indicators: the value at bar t uses bars up to and including t only.
Entries before a window is full are NaN."""

from __future__ import annotations

import numpy as np


def sma(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if window <= len(x):
        c = np.cumsum(np.r_[0.0, x])
        out[window - 1 :] = (c[window:] - c[:-window]) / window
    return out


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if window <= len(x):
        mean = sma(x, window)
        c2 = np.cumsum(np.r_[0.0, x * x])
        mean_sq = (c2[window:] - c2[:-window]) / window
        out[window - 1 :] = np.sqrt(np.maximum(mean_sq - mean[window - 1 :] ** 2, 0.0))
    return out


def _rolling_extreme(x: np.ndarray, window: int, op: np.ufunc, fill: float) -> np.ndarray:
    """O(n) sliding extreme (van Herk / Gil-Werman): prefix and suffix scans within blocks of
    `window`; the extreme of x[i-w+1..i] is op(suffix[i-w+1], prefix[i])."""
    n = len(x)
    out = np.full(n, np.nan)
    if window > n:
        return out
    if window == 1:
        return x.astype(np.float64).copy()
    blocks = -(-n // window)
    padded = np.full(blocks * window, fill)
    padded[:n] = x
    grid = padded.reshape(blocks, window)
    prefix = op.accumulate(grid, axis=1).ravel()
    suffix = op.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    ends = np.arange(window - 1, n)
    out[window - 1 :] = op(suffix[ends - window + 1], prefix[ends])
    return out


def rolling_max(x: np.ndarray, window: int) -> np.ndarray:
    return _rolling_extreme(x, window, np.maximum, -np.inf)


def rolling_min(x: np.ndarray, window: int) -> np.ndarray:
    return _rolling_extreme(x, window, np.minimum, np.inf)


def rsi(close: np.ndarray, period: int) -> np.ndarray:
    """RSI from simple rolling means of gains and losses (Cutler's variant: no recursion)."""
    delta = np.r_[np.nan, np.diff(close)]
    gain, loss = np.where(delta > 0, delta, 0.0), np.where(delta < 0, -delta, 0.0)
    gain[0] = loss[0] = np.nan
    avg_gain, avg_loss = sma(np.nan_to_num(gain), period), sma(np.nan_to_num(loss), period)
    avg_gain[:period] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = avg_gain / avg_loss
        out = 100.0 - 100.0 / (1.0 + rs)
    out[(avg_loss == 0) & (avg_gain > 0)] = 100.0
    out[(avg_loss == 0) & (avg_gain == 0)] = 50.0
    return out


def shift(x: np.ndarray, n: int = 1) -> np.ndarray:
    """x delayed by n bars (NaN-filled): the value known before bar t."""
    out = np.full(len(x), np.nan)
    out[n:] = x[:-n]
    return out


def hold_states(events: np.ndarray) -> np.ndarray:
    """Forward-fill a state array where NaN means 'no event this bar'; leading NaN → 0."""
    idx = np.where(np.isnan(events), 0, np.arange(len(events)))
    np.maximum.accumulate(idx, out=idx)
    out = events[idx]
    out[np.isnan(out)] = 0.0
    return out
