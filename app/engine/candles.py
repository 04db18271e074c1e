"""Candles as NumPy arrays, resampling to higher timeframes, and seeded synthetic data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIMEFRAMES: dict[str, int] = {
    "1m": 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "1h": 60 * 60_000,
    "4h": 4 * 60 * 60_000,
    "1d": 24 * 60 * 60_000,
}
SYNTHETIC_SOURCE = "synthetic"
DEFAULT_START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z


@dataclass(frozen=True)
class Candles:
    """Equal-length arrays: open_time (int64 ms since the epoch, UTC) and float64 OHLCV."""

    timeframe: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    def __getitem__(self, item: slice) -> Candles:
        if not isinstance(item, slice):
            raise TypeError("Candles can only be sliced")
        return Candles(
            self.timeframe,
            self.open_time[item],
            self.open[item],
            self.high[item],
            self.low[item],
            self.close[item],
            self.volume[item],
        )

    @property
    def bars_per_year(self) -> float:
        return 365 * 24 * 60 * 60_000 / TIMEFRAMES[self.timeframe]


def resample(candles: Candles, timeframe: str) -> Candles:
    """Aggregate into `timeframe` buckets (floor of open_time): first open, max high, min low,
    last close, summed volume. A partial last bucket is kept."""
    if timeframe == candles.timeframe:
        return candles
    step = TIMEFRAMES[timeframe]
    if step % TIMEFRAMES[candles.timeframe]:
        raise ValueError(f"cannot resample {candles.timeframe} to {timeframe}")
    if len(candles) == 0:
        return Candles(timeframe, *(a[:0] for a in _arrays(candles)))
    bucket = candles.open_time // step
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(candles)] - 1
    return Candles(
        timeframe,
        bucket[starts] * step,
        candles.open[starts],
        np.maximum.reduceat(candles.high, starts),
        np.minimum.reduceat(candles.low, starts),
        candles.close[ends],
        np.add.reduceat(candles.volume, starts),
    )


def _arrays(c: Candles) -> tuple[np.ndarray, ...]:
    return c.open_time, c.open, c.high, c.low, c.close, c.volume


def synthetic(
    n_bars: int, seed: int, timeframe: str = "1m", start_ms: int = DEFAULT_START_MS, start_price: float = 20_000.0
) -> Candles:
    """A seeded random walk with volatility clustering and drifting regimes, so strategies have
    structure to find. Deterministic for a seed. Not market data: store it as `synthetic`."""
    rng = np.random.default_rng(seed)
    step = TIMEFRAMES[timeframe]
    scale = np.sqrt(step / 60_000)
    # Volatility: a slowly mean-reverting log process (clustering).
    shocks = rng.standard_normal(n_bars)
    log_vol = np.empty(n_bars)
    level, persistence, noise = np.log(0.0008 * scale), 0.999, 0.03
    lv = level
    for i in range(0, n_bars, 4096):  # blockwise AR(1) keeps memory flat and stays fast
        block = shocks[i : i + 4096] * noise
        out = np.empty(len(block))
        for j, e in enumerate(block):
            lv = level + persistence * (lv - level) + e
            out[j] = lv
        log_vol[i : i + len(block)] = out
    vol = np.exp(log_vol)
    # Regimes: drift that changes sign every few thousand bars.
    regime_len = rng.integers(2_000, 20_000, size=n_bars // 2_000 + 2)
    drift_values = rng.normal(0, 0.00002 * scale, size=len(regime_len))
    drift = np.repeat(drift_values, regime_len)[:n_bars]
    returns = drift + vol * rng.standard_normal(n_bars)
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.r_[start_price, close[:-1]] * np.exp(rng.normal(0, 0.1, n_bars) * vol)
    wick = np.abs(rng.standard_normal((2, n_bars))) * vol * close
    high = np.maximum(open_, close) + wick[0]
    low = np.maximum(np.minimum(open_, close) - wick[1], 1e-9)
    volume = np.round(rng.gamma(2.0, 5.0, n_bars) * (1 + 50 * vol), 6)
    open_time = start_ms + step * np.arange(n_bars, dtype=np.int64)
    return Candles(timeframe, open_time, open_, high, low, close, volume)
