"""Candles as NumPy arrays, their validation and calendar, resampling to higher timeframes, and
seeded synthetic data.

Calendar convention: a year is 365.25 days. The span of a set of candles runs from the first
bar's open to the end of the last bar (its open time plus one timeframe step), so gaps (nights,
weekends, holidays, missing data) count as elapsed time.

The periods per year (the annualisation factor) are the bars the data actually has in a year,
counted from its own timestamps (`bars_per_year`): 24/7 1-minute data gets 525,960, weekday-only
daily stock data with 252 sessions a year about 252, 6.5-hour sessions of 1-minute bars on
weekdays about 98,000-102,000. A slice of candles (a holdout, a walk-forward window) keeps the
figure of the data it was cut from: one session, measured over its own 6.5 hours, would look
like round-the-clock trading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.engine.errors import InvalidCandles

TIMEFRAMES: dict[str, int] = {
    "1m": 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "1h": 60 * 60_000,
    "4h": 4 * 60 * 60_000,
    "1d": 24 * 60 * 60_000,
}
SYNTHETIC_SOURCE = "synthetic"
SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}$"  # trad's symbols, e.g. BTCUSDT (whatever exchange they came from)
DEFAULT_START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
YEAR_MS = 365.25 * 24 * 60 * 60_000
DAY_MS = 24 * 60 * 60_000
WEEK_MS = 7 * DAY_MS
MONDAY_MS = 4 * DAY_MS  # 1970-01-05, a Monday: weeks are counted from Monday 00:00 UTC
PRICE_FIELDS = ("open", "high", "low", "close")


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
    _valid: bool = field(default=False, init=False, repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.open_time)

    def __getitem__(self, item: slice) -> Candles:
        if not isinstance(item, slice):
            raise TypeError("Candles can only be sliced")
        part = Candles(
            self.timeframe,
            self.open_time[item],
            self.open[item],
            self.high[item],
            self.low[item],
            self.close[item],
            self.volume[item],
        )
        if self._valid and (item.step is None or item.step > 0):
            object.__setattr__(part, "_valid", True)  # a forward slice of valid candles is valid
        if len(self):
            part._memo["periods_per_year"] = self.periods_per_year  # the data's rate, not the slice's
        return part

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """A value derived from these candles, computed once (e.g. an indicator's prefix sums
        reused by every optimisation trial)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def span_years(self) -> float:
        """Calendar years from the first bar's open to the last bar's end (0 with no bars)."""
        if len(self) == 0:
            return 0.0
        return float(self.open_time[-1] - self.open_time[0] + TIMEFRAMES[self.timeframe]) / YEAR_MS

    @property
    def periods_per_year(self) -> float:
        """Bars per year the data has (`bars_per_year`), or those of the data it was sliced from."""
        return self.memo("periods_per_year", lambda: bars_per_year(self.open_time, TIMEFRAMES[self.timeframe]))

    def validate(self) -> Candles:
        """Raise InvalidCandles naming the first bad bar (index, time) and field; a no-op once the
        candles passed. Checks: equal lengths, a known timeframe, strictly increasing open times,
        finite positive prices with low ≤ open, close ≤ high, finite non-negative volume."""
        if self._valid:
            return self
        if self.timeframe not in TIMEFRAMES:
            raise InvalidCandles(f"unknown timeframe {self.timeframe!r}")
        n = len(self.open_time)
        for name in (*PRICE_FIELDS, "volume"):
            if len(getattr(self, name)) != n:
                raise InvalidCandles(f"{name} has {len(getattr(self, name))} values for {n} open times")
        if n > 1:
            self._check(np.diff(self.open_time) > 0, "open_time", "is not after the previous bar's", offset=1)
        for name in PRICE_FIELDS:
            values = getattr(self, name)
            self._check(np.isfinite(values), name, "is not a finite number")
            self._check(values > 0, name, "is not positive")
        self._check(self.low <= self.high, "high", "is below the low")
        for name in ("open", "close"):
            self._check(getattr(self, name) <= self.high, name, "is above the high")
            self._check(getattr(self, name) >= self.low, name, "is below the low")
        self._check(np.isfinite(self.volume) & (self.volume >= 0), "volume", "is not a finite non-negative number")
        object.__setattr__(self, "_valid", True)
        return self

    def _check(self, ok: np.ndarray, name: str, problem: str, offset: int = 0) -> None:
        if ok.all():
            return
        i = int(np.argmin(ok)) + offset
        try:
            when = datetime.fromtimestamp(int(self.open_time[i]) / 1000, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            when = f"open_time {int(self.open_time[i])}"
        value = getattr(self, name)[i].item()
        raise InvalidCandles(f"bad candle at bar {i} ({when}): {name} {value!r} {problem}")


def _most_in_one(open_time: np.ndarray, bucket_ms: int) -> int:
    """The most bars in one calendar bucket (day, or week from Monday), UTC."""
    bucket = (open_time - MONDAY_MS) // bucket_ms
    edges = np.flatnonzero(np.diff(bucket)) + 1
    return int(np.diff(np.r_[0, edges, len(bucket)]).max())


def bars_per_year(open_time: np.ndarray, step_ms: int) -> float:
    """The bars a year of this data holds, from its own (increasing) open times:
    - spanning a year or more: the bars observed per elapsed year (holidays and gaps count);
    - two weeks or more: the most bars in one calendar week × 365.25/7 (a full week of trading,
      so nights and weekends without bars are not counted as trading time);
    - two days or more: the most bars in one calendar day × 365.25 (every day assumed to trade);
    - less: the bars per elapsed time, as round-the-clock trading.
    Complete 24/7 data gets one bar per step all year (525,960 for 1-minute bars) in every case."""
    n = len(open_time)
    if n == 0:
        return 0.0
    span = float(open_time[-1] - open_time[0] + step_ms)
    if span >= YEAR_MS:
        return n * YEAR_MS / span
    for bucket_ms in (WEEK_MS, DAY_MS):
        if span >= 2 * bucket_ms:
            return _most_in_one(open_time, bucket_ms) * YEAR_MS / bucket_ms
    return n * YEAR_MS / span


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
