"""Look-ahead and warm-up bias checks, run on every training job's chosen configuration and by
`trad strategies check`.

Both look only at what a strategy does, never at its code: its positions
(`strategy.signals(candles, params, start)`, decided on each bar's close, flat before `start`)
and its declared warm-up (`strategy.warmup(params)`).

- Look-ahead: at several bars t (seeded: three spread across the range, each followed by one
  where the position changes near it, where a decision is closest to going the other way), the
  bars after t are replaced by other valid candles: a jump the other way from the real next
  bar, then a random walk to ten times the data's highest price or a tenth of its lowest, so a
  normalisation over the whole series moves; and shorter than the real future, so a read past
  the end moves too. Every position up to and including t must stay as it was. Each comparison
  runs on a slice: up to `SPAN` bars before t with the warm-up in front, and up to twice
  max(`SPAN`, two warm-ups) after it.
- Warm-up: at a few ranges drawn at random, positions are computed with the declared warm-up of
  history in front, with twice it and, on the range furthest in, with all the history the data
  has. They must be equal.

A failure raises `LookaheadBias` or `WarmupTooShort` (never retried) naming the first bar where
it showed, the parameters and what to fix. A pass returns a `BiasReport` saying what was tried.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from app.engine.candles import Candles
from app.engine.errors import InvalidPositions, LookaheadBias, WarmupTooShort

LOOKAHEAD_POINTS = 6  # bars t after which the future is replaced: half anywhere, half where positions change
WARMUP_POINTS = 3  # ranges whose positions are computed with more history in front
JUMP = 0.5  # the log move of the first replaced bar (about 65 % up or 40 % down)
SPAN = 2_000  # bars compared before each t, and the least compared in each warm-up range
LOOKAHEAD_CAUSES = "shift(-1), a centred window, a normalisation or fit over the whole series"
WARMUP_CAUSES = "a recursive indicator such as an EMA or Wilder's smoothing, or a window longer than the warm-up"


class CheckedStrategy(Protocol):
    """What the checks use of a strategy, and nothing more."""

    name: str

    def signals(self, candles: Candles, params: dict[str, Any], start: int = 0) -> np.ndarray: ...

    def warmup(self, params: dict[str, Any]) -> int: ...


@dataclass
class BiasReport:
    """What the checks tried on one or more parameter sets, all of which passed."""

    lookahead_bars: list[int] = field(default_factory=list)  # the bars t after which the future was replaced
    lookahead_times: list[str] = field(default_factory=list)
    warmup: int = 0  # the declared warm-up (the largest, over the parameter sets checked)
    history_lengths: list[int] = field(default_factory=list)  # bars of history tried in front of the ranges
    warmup_ranges: list[list[int]] = field(default_factory=list)  # [first, end) bars compared
    warmup_skipped: str | None = None  # why the warm-up check could not compare anything, if so
    params_checked: int = 0
    seconds: float = 0.0

    def merge(self, other: BiasReport) -> None:
        self.lookahead_bars += other.lookahead_bars
        self.lookahead_times += other.lookahead_times
        self.warmup = max(self.warmup, other.warmup)
        self.history_lengths = sorted(set(self.history_lengths) | set(other.history_lengths))
        self.warmup_ranges += other.warmup_ranges
        self.warmup_skipped = self.warmup_skipped or other.warmup_skipped
        self.params_checked += other.params_checked
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": True,
            "params_checked": self.params_checked,
            "lookahead": {"bars_tried": self.lookahead_bars, "times_tried": self.lookahead_times},
            "warmup": {
                "declared": self.warmup,
                "history_lengths": self.history_lengths,
                "ranges": self.warmup_ranges,
                "skipped": self.warmup_skipped,
            },
            "seconds": round(self.seconds, 4),
        }


def when(candles: Candles, bar: int) -> str:
    """A bar's open time as `2024-03-01T10:00Z`."""
    return datetime.fromtimestamp(int(candles.open_time[bar]) / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _positions(strategy: CheckedStrategy, candles: Candles, params: dict[str, Any], start: int) -> np.ndarray:
    made = np.asarray(strategy.signals(candles, params, start))
    if made.shape != (len(candles),):
        raise InvalidPositions(
            f"{strategy.name} returned {made.shape} positions for {len(candles)} candles; it must return one per bar"
        )
    return made


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    differ = np.flatnonzero(a != b)
    return int(differ[0]) if len(differ) else None


def _join(head: Candles, tail: dict[str, np.ndarray]) -> Candles:
    return Candles(
        head.timeframe,
        *(np.concatenate([getattr(head, name), tail[name]]) for name in ("open_time", "open", "high", "low", "close")),
        np.concatenate([head.volume, tail["volume"]]),
    )


def other_future(data: Candles, t: int, length: int, rng: np.random.Generator, up: bool) -> Candles:
    """`data[: t + 1]` as it is, then `length` other valid bars at the next open times: a jump of
    `JUMP` (log) up (`up`) or down at the first, then a random walk more volatile than the data
    ending at ten times the data's highest high (`up`) or a tenth of its lowest low, with other
    volumes."""
    close_t = float(data.close[t])
    moves = np.diff(np.log(data.close[max(0, t - SPAN) : t + 1]))
    vol = max(float(np.std(moves)) if len(moves) > 1 else 0.0, 1e-4) * 2
    jump = JUMP if up else -JUMP
    target = np.log(10 * float(data.high.max()) if up else 0.1 * float(data.low.min()))
    steps = np.empty(length)
    steps[0] = jump
    if length > 1:
        drift = (target - np.log(close_t) - jump) / (length - 1)
        steps[1:] = drift + vol * rng.standard_normal(length - 1)
    close = close_t * np.exp(np.cumsum(steps))
    open_ = np.r_[close_t, close[:-1]] * np.exp(vol / 2 * rng.standard_normal(length))
    wicks = np.exp(np.abs(vol * rng.standard_normal((2, length))))
    volume = data.volume[t + 1 : t + 1 + length] * np.exp(rng.standard_normal(length)) + rng.uniform(0.5, 1.5)
    tail = {
        "open_time": data.open_time[t + 1 : t + 1 + length],
        "open": open_,
        "high": np.maximum(open_, close) * wicks[0],
        "low": np.minimum(open_, close) / wicks[1],
        "close": close,
        "volume": volume,
    }
    return _join(data[: t + 1], tail)


def _spread(rng: np.random.Generator, low: int, high: int, k: int) -> list[int]:
    """Up to `k` distinct bars in [low, high], one drawn in each of `k` equal stretches."""
    if high < low:
        return []
    edges = np.linspace(low, high + 1, k + 1)
    picks = {int(rng.integers(int(a), max(int(a) + 1, int(b)))) for a, b in itertools.pairwise(edges)}
    return sorted(p for p in picks if low <= p <= high)


def check_lookahead(
    strategy: CheckedStrategy,
    data: Candles,
    params: dict[str, Any],
    *,
    seed: int,
    first: int = 0,
    points: int = LOOKAHEAD_POINTS,
    should_stop: Callable[[], None] = lambda: None,
) -> list[int]:
    """Raise LookaheadBias if a position up to some bar t changes when the bars after t are
    replaced; the bars t tried otherwise. `first` is the first bar the strategy may trade. Half
    the bars t are drawn across the range; each of those is followed by one drawn among the bars
    where the position changes near it (where a decision is closest to going the other way, so
    a small read of the future shows), compared against the same real slice."""
    warmup = max(0, int(strategy.warmup(params)))
    n = len(data)
    rng = np.random.default_rng([seed, 0x1A])
    margin = max(SPAN, 2 * warmup)
    tried: list[int] = []
    for t in _spread(rng, first, n - 2, (points + 1) // 2):  # t needs at least one bar after it
        should_stop()
        s = max(first, t - SPAN)  # the first bar compared
        lo = max(0, s - warmup)
        real = data[lo : min(n, t + 1 + 2 * margin)]
        before = _positions(strategy, real, params, s - lo)
        turns = np.flatnonzero(np.diff(before[s - lo :])) + s + 1  # bars where the position changes
        turns = turns[turns <= min(n - 2, t + margin)]
        bars = [t, int(rng.choice(turns))] if len(turns) and len(tried) < points else [t]
        for u in dict.fromkeys(bars):
            up = data.close[u + 1] <= data.close[u]  # the other future goes the other way from the next bar on
            other = other_future(real, u - lo, min(margin, n - 1 - u), rng, up=bool(up))
            after = _positions(strategy, other, params, s - lo)
            differ = _first_difference(before[s - lo : u - lo + 1], after[s - lo : u - lo + 1])
            tried.append(u)
            if differ is not None:
                bar = s + differ
                raise LookaheadBias(
                    f"look-ahead bias in {strategy.name} with parameters {params}: the position at "
                    f"{when(data, bar)} (bar {bar}) changed when only the bars after {when(data, u)} were replaced. "
                    f"A position is decided on its bar's close and may use that bar and earlier ones only; the "
                    f"strategy reads later data ({LOOKAHEAD_CAUSES}). Compute every indicator from past and "
                    f"current bars only.",
                    bar=bar,
                    time=when(data, bar),
                    params=params,
                )
    return sorted(set(tried))


def _bars(n: int) -> str:
    return f"{n} bar" if n == 1 else f"{n} bars"


def _needed_warmup(strategy: CheckedStrategy, data: Candles, params: dict[str, Any], ranges: list[list[int]]) -> int:
    """The least history, doubling from twice the declared warm-up, that gives on every range
    [first, end) the positions all the history in front of it gives (the furthest `first` if
    none shorter does)."""
    truths = [(first, end, _positions(strategy, data[:end], params, first)[first:]) for first, end in ranges]
    longest = max(first for first, _, _ in truths)
    h = max(1, 2 * int(strategy.warmup(params)))
    while h < longest:
        if all(
            np.array_equal(
                _positions(strategy, data[first - min(h, first) : end], params, min(h, first))[min(h, first) :], truth
            )
            for first, end, truth in truths
        ):
            return h
        h = min(2 * h, longest)
    return longest


def check_warmup(
    strategy: CheckedStrategy,
    data: Candles,
    params: dict[str, Any],
    *,
    seed: int,
    points: int = WARMUP_POINTS,
    should_stop: Callable[[], None] = lambda: None,
) -> BiasReport:
    """Raise WarmupTooShort if the positions on a range change when more history than the
    declared warm-up is put in front; what was compared otherwise."""
    warmup = max(0, int(strategy.warmup(params)))
    n = len(data)
    rng = np.random.default_rng([seed, 0x2B])
    report = BiasReport(warmup=warmup, params_checked=1)
    length = max(SPAN, 4 * warmup)
    if n < warmup + 2:
        report.warmup_skipped = f"{n} bars is too few to compare anything after the declared warm-up of {warmup} bars"
        return report
    lowest = min(2 * warmup, n - 2)
    firsts = _spread(rng, lowest, max(lowest, n - length), points)
    for k, first in enumerate(firsts):
        should_stop()
        end = min(n, first + length)
        histories = sorted({min(first, warmup), min(first, 2 * warmup)})
        if k == len(firsts) - 1 and first > histories[-1]:
            histories.append(first)  # all the history the data has, on the range furthest in
        if len(histories) < 2:
            continue
        made = [_positions(strategy, data[first - h : end], params, h)[h:] for h in histories]
        report.history_lengths = sorted(set(report.history_lengths) | set(histories))
        report.warmup_ranges.append([first, end])
        for h, positions in zip(histories[1:], made[1:], strict=True):
            differ = _first_difference(made[0], positions)
            if differ is None:
                continue
            bar = first + differ
            needed = _needed_warmup(strategy, data, params, [[f, min(n, f + length)] for f in firsts])
            raise WarmupTooShort(
                f"warm-up too short in {strategy.name} with parameters {params}: it declares {_bars(warmup)} "
                f"of warm-up, but the position at {when(data, bar)} (bar {bar}) changed when the history in front "
                f"of {when(data, first)} grew from {histories[0]} to {_bars(h)}. Its indicators depend on more "
                f"history than declared ({WARMUP_CAUSES}): declare a warm-up of at least {_bars(needed)} for these "
                f"parameters, or use indicators that need only a fixed window.",
                bar=bar,
                time=when(data, bar),
                params=params,
            )
    if not report.warmup_ranges:
        report.warmup_skipped = (
            f"{n} bars leave no range with more than the declared warm-up of {warmup} bars of history in front"
        )
    return report


def check(
    strategy: CheckedStrategy,
    data: Candles,
    params: dict[str, Any],
    *,
    seed: int,
    should_stop: Callable[[], None] = lambda: None,
) -> BiasReport:
    """Both checks on one parameter set over all of `data`; raises on the first bias found."""
    started = time.perf_counter()
    data = data.validate()
    tried = check_lookahead(strategy, data, params, seed=seed, should_stop=should_stop)
    report = check_warmup(strategy, data, params, seed=seed, should_stop=should_stop)
    report.lookahead_bars = tried
    report.lookahead_times = [when(data, t) for t in tried]
    report.seconds = time.perf_counter() - started
    return report


def check_all(
    strategy: CheckedStrategy,
    data: Candles,
    param_sets: list[dict[str, Any]],
    *,
    seed: int,
    should_stop: Callable[[], None] = lambda: None,
) -> BiasReport:
    """Both checks on every distinct parameter set (a walk-forward's windows), merged."""
    report = BiasReport()
    seen: list[dict[str, Any]] = []
    for params in param_sets:
        if params in seen:
            continue
        seen.append(params)
        report.merge(check(strategy, data, params, seed=seed + len(seen) - 1, should_stop=should_stop))
    return report
