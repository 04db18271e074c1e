"""Causal rolling indicators: the value at bar t uses bars up to and including t only.
Entries before a window is full are NaN."""

from __future__ import annotations

import numpy as np

SIGN_RTOL = 1e-12  # differences this small relative to the values compared are ties, not signals


def _prefix_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums as an unevaluated pair (high, low): `np.cumsum` plus the running total of
    each addition's exact rounding error (Knuth's TwoSum), so window sums taken as differences
    of prefixes keep full precision however long the series is."""
    n = len(x)
    high = np.empty(n + 1)
    high[0] = 0.0
    np.cumsum(x, out=high[1:])
    low = np.empty(n + 1)
    low[0] = 0.0
    added = np.subtract(high[1:], high[:-1], out=low[1:])  # what the addition really added
    lost = np.subtract(high[1:], added)
    np.subtract(high[:-1], lost, out=lost)  # the running total's part that was rounded away
    np.subtract(x, added, out=added)  # the term's part that was rounded away
    added += lost
    np.cumsum(low, out=low)
    return high, low


def _window_sums(prefix: tuple[np.ndarray, np.ndarray], window: int, out: np.ndarray) -> np.ndarray:
    high, low = prefix
    np.subtract(high[window:], high[:-window], out=out)
    out += low[window:]
    out -= low[:-window]
    return out


class Rolling:
    """Window statistics of one series from prefix sums computed once, so many windows over
    the same series (one per optimisation trial) cost one pass each. Means are accurate to a
    few ulps; a window whose values are all equal gives exactly that value as its mean and
    exactly 0 as its standard deviation (detected by counting changes with integers)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        n = len(self.x)
        self._sums = _prefix_sums(self.x)
        self._changes = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(self.x[1:] != self.x[:-1], out=self._changes[1:])
        self._deviation_sums: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
        self._nonnegative = bool(n == 0 or self.x.min() >= 0)  # prefix sums that never decrease (`crossover`)

    def constant(self, window: int) -> np.ndarray:
        """For each full window ending at t (t ≥ window−1): are all its values equal?"""
        return self._changes[window - 1 :] == self._changes[: len(self.x) - window + 1]

    def mean(self, window: int) -> np.ndarray:
        out = np.full(len(self.x), np.nan)
        if window <= len(self.x):
            mean = _window_sums(self._sums, window, out[window - 1 :])
            mean /= window
            flat = self.constant(window)
            if flat.any():
                mean[flat] = self.x[window - 1 :][flat]
        return out

    def crossover(self, fast: int, slow: int, rtol: float = SIGN_RTOL) -> np.ndarray:
        """int8 signs of mean(fast) − mean(slow), 0 within `rtol` of mean(slow) or before the
        slow window is full: `np.nan_to_num(sign(mean(fast) − mean(slow), mean(slow)))`, the
        same numbers, in one compiled pass (`kernel.crossover`) with no array in between."""
        from app.engine import kernel  # numba loads on the first use, not with the strategies

        if not 1 <= fast <= slow:
            raise ValueError(f"crossover needs 1 ≤ fast ≤ slow, got {fast} and {slow}")
        out = np.empty(len(self.x), dtype=np.int8)
        high, low = self._sums
        kernel.crossover(self.x, high, low, self._changes, fast, slow, rtol, self._nonnegative, out)
        return out

    def bollinger_states(self, window: int, k: float, start: int, rtol: float = SIGN_RTOL) -> np.ndarray:
        """bollinger_breakout's held states (see `strategies._bollinger_breakout_numpy`) from this
        series' mean and deviation sums, in one compiled pass (`kernel.bollinger`)."""
        from app.engine import kernel  # numba loads on the first use, not with the strategies

        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        first, second = self._deviations()
        out = np.empty(len(self.x))
        high, low = self._sums
        kernel.bollinger(self.x, high, low, *first, *second, self._changes, window, k, start, rtol, out)
        return out

    def _deviations(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Prefix sums of the deviations from the series' first value and of their squares."""
        if self._deviation_sums is None:
            d = self.x - self.x[0]
            self._deviation_sums = (_prefix_sums(d), _prefix_sums(d * d))
        return self._deviation_sums

    def std(self, window: int) -> np.ndarray:
        """Population standard deviation. Sums are of deviations from the series' first value,
        so the variance does not drown in the square of the price level."""
        out = np.full(len(self.x), np.nan)
        if window > len(self.x):
            return out
        first, second = self._deviations()
        mean = _window_sums(first, window, np.empty(len(self.x) - window + 1))
        mean /= window
        var = _window_sums(second, window, out[window - 1 :])
        var /= window
        mean *= mean
        var -= mean
        np.maximum(var, 0.0, out=var)
        np.sqrt(var, out=var)
        var[self.constant(window)] = 0.0
        return out


def sma(x: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average (see `Rolling`)."""
    return Rolling(x).mean(window)


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Population standard deviation over the window (see `Rolling`)."""
    return Rolling(x).std(window)


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


def gains_and_losses(close: np.ndarray) -> tuple[Rolling, Rolling]:
    """Rolling windows over the bar-to-bar gains and losses (0 on bar 0), for `rsi`."""
    delta = np.r_[0.0, np.diff(close)]
    return Rolling(np.where(delta > 0, delta, 0.0)), Rolling(np.where(delta < 0, -delta, 0.0))


def rsi(close: np.ndarray, period: int, moves: tuple[Rolling, Rolling] | None = None) -> np.ndarray:
    """RSI from simple rolling means of gains and losses (Cutler's variant: no recursion).
    `moves` may pass `gains_and_losses(close)` computed once for many periods."""
    gains, losses = moves if moves is not None else gains_and_losses(close)
    avg_gain, avg_loss = gains.mean(period), losses.mean(period)
    avg_gain[:period] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = avg_gain / avg_loss
        out = 100.0 - 100.0 / (1.0 + rs)
    out[(avg_loss == 0) & (avg_gain > 0)] = 100.0
    out[(avg_loss == 0) & (avg_gain == 0)] = 50.0
    return out


def rsi_states(
    moves: tuple[Rolling, Rolling], period: int, upper: float, lower: float, start: int, rtol: float = SIGN_RTOL
) -> np.ndarray:
    """rsi_reversion's held states from `gains_and_losses` (see
    `strategies._rsi_reversion_numpy`), in one compiled pass (`kernel.rsi_states`)."""
    from app.engine import kernel  # numba loads on the first use, not with the strategies

    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    gains, losses = moves
    out = np.empty(len(gains.x))
    kernel.rsi_states(
        gains.x, *gains._sums, gains._changes, losses.x, *losses._sums, losses._changes,
        period, float(upper), float(lower), start, rtol, out,
    )  # fmt: skip
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
