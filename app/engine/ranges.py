"""A range of bars to score, with the history in front of it that warms the indicators.

Every evaluation (an optimisation trial, the holdout, a walk-forward window, a fold) scores the
bars `[first, end)` of the data, but computes the strategy's signals on those bars with up to
`history` bars before them in front, so its indicators are warm at the first scored bar, as a
live run's would be. Nothing is traded before `first` (see `strategies`): the backtest runs on
the scored bars alone. One range serves every trial of a search, so the indicator sums kept on
its candles (`Candles.memo`) are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.backtest import BacktestResult, Costs, backtest
from app.engine.candles import Candles
from app.engine.strategy import Strategy


@dataclass(frozen=True)
class ScoredRange:
    context: Candles  # the history, then the scored bars
    history: int  # how many of `context`'s bars are history
    first: int  # the first scored bar's index in the full data

    @property
    def bars(self) -> Candles:
        """The scored bars (the same object on every call)."""
        return self.context.memo(f"scored_from_{self.history}", lambda: self.context[self.history :])

    def __len__(self) -> int:
        return len(self.context) - self.history

    def positions(self, strategy: Strategy, params: dict[str, Any]) -> np.ndarray:
        return self.orders(strategy, params)[0]

    def orders(self, strategy: Strategy, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """The scored bars' positions and stop exits (see `Strategy.orders`)."""
        positions, exits = strategy.orders(self.context, params, self.history)
        return positions[self.history :], None if exits is None else exits[self.history :]

    def backtest(self, strategy: Strategy, params: dict[str, Any], costs: Costs) -> BacktestResult:
        positions, exits = self.orders(strategy, params)
        return backtest(self.bars, positions, costs, exits)


def scored_range(data: Candles, first: int, end: int, history: int) -> ScoredRange:
    """Bars `[first, end)` of `data` with as much of `history` in front as the data has."""
    h = max(0, min(first, history))
    return ScoredRange(data[first - h : end], h, first)


def for_strategy(data: Candles, first: int, end: int, strategy: Strategy) -> ScoredRange:
    """The range with the longest warm-up any parameters of `strategy` need in front."""
    return scored_range(data, first, end, strategy.max_warmup)


def as_range(bars: Candles | ScoredRange) -> ScoredRange:
    """A range as given, or all of `bars` with no history in front."""
    return bars if isinstance(bars, ScoredRange) else ScoredRange(bars, 0, 0)
