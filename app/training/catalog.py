"""What a training request may name, from one source each: strategies, timeframes, objectives,
validation modes and the bound on costs are the engine's; the symbol pattern is the candles'."""

from __future__ import annotations

import re

from app.engine.candles import SYMBOL_PATTERN
from app.engine.candles import TIMEFRAMES as _TIMEFRAME_MS
from app.engine.costs import MAX_COST_BPS
from app.engine.optimise import OBJECTIVES
from app.engine.pipeline import VALIDATION_MODES
from app.engine.strategies import STRATEGIES, ParamSpec

TIMEFRAMES: tuple[str, ...] = tuple(_TIMEFRAME_MS)
SYMBOL = re.compile(SYMBOL_PATTERN)

__all__ = [
    "MAX_COST_BPS",
    "OBJECTIVES",
    "SYMBOL",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "VALIDATION_MODES",
    "strategy_names",
    "strategy_spaces",
]


def strategy_names() -> tuple[str, ...]:
    return tuple(sorted(STRATEGIES))


def strategy_spaces() -> dict[str, tuple[ParamSpec, ...]]:
    """Each strategy's parameter space (what the search draws from), by name."""
    return {name: STRATEGIES[name].space for name in strategy_names()}
