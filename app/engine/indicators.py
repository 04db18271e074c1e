"""Causal rolling indicators: the value at bar t uses bars up to and including t only.
Entries before a window is full are NaN."""

from __future__ import annotations

import numpy as np

SIGN_RTOL = 1e-12  # differences this small relative to the values compared are ties, not signals


def _prefix_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums as an unevaluated pair (high, low): `np.cumsum` plus the running total of
    each addition's exact rounding error (Knuth's TwoSum), so window sums taken as differences
    of prefixes keep full precision however long the series is."""
    high = np.cumsum(np.r_[0.0, x])
    before, added = high[:-1], high[1:] - high[:-1]
    err = np.empty_like(high)
    err[0] = 0.0
    err[1:] = (before - (high[1:] - added)) + (x - added)
    return high, np.cumsum(err)


def _window_sums(x: np.ndarray, window: int) -> np.ndarray:
    high, low = _prefix_sums(x)
    return (high[window:] - high[:-window]) + (low[window:] - low[:-window])


def constant_windows(x: np.ndarray, window: int) -> np.ndarray:
    """For each full window ending at t (t ≥ window−1): are all its values equal? Counted with
    integers, so it is exact."""
    changes = np.r_[0, np.cumsum(x[1:] != x[:-1])]
    return changes[window - 1 :] == changes[: len(x) - window + 1]


def sma(x: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average, accurate to a few ulps and exactly the value where a window holds
    equal values."""
    out = np.full(len(x), np.nan)
    if window <= len(x):
        mean = _window_sums(x, window) / window
        flat = constant_windows(x, window)
        mean[flat] = x[window - 1 :][flat]
        out[window - 1 :] = mean
    return out


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Population standard deviation over the window, exactly 0 where a window holds equal
    values. Sums are of deviations from the series' first value and compensated (see
    `_prefix_sums`), so the variance does not drown in the square of the price level."""
    out = np.full(len(x), np.nan)
    if window <= len(x):
        d = x - x[0]
        mean = _window_sums(d, window) / window
        mean_sq = _window_sums(d * d, window) / window
        sd = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
        sd[constant_windows(x, window)] = 0.0
        out[window - 1 :] = sd
    return out


def sign(diff: np.ndarray, scale: np.ndarray | float, rtol: float = SIGN_RTOL) -> np.ndarray:
    """np.sign with a tolerance: 0 where |diff| ≤ rtol·|scale| (a tie up to rounding)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(diff) <= rtol * np.abs(scale), 0.0, np.sign(diff))


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
