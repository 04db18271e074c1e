"""What a training request may name, from one source each: strategies (the installed ones, from
the engine's registry), timeframes, objectives, validation modes and the bound on costs are the
engine's; the symbol pattern is the service's."""

from __future__ import annotations

import re

from app.engine import registry
from app.engine.candles import TIMEFRAMES as _TIMEFRAME_MS
from app.engine.costs import MAX_COST_BPS
from app.engine.optimise import OBJECTIVES
from app.engine.pipeline import VALIDATION_MODES
from app.engine.strategy import Strategy

TIMEFRAMES: tuple[str, ...] = tuple(_TIMEFRAME_MS)
SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}$"
SYMBOL = re.compile(SYMBOL_PATTERN)

__all__ = [
    "MAX_COST_BPS",
    "OBJECTIVES",
    "SYMBOL",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "VALIDATION_MODES",
    "broken_strategies",
    "strategies",
    "strategy_names",
]


def strategies() -> dict[str, Strategy]:
    """The installed strategies by name, each with its package, version, space and warm-up."""
    return registry.strategies()


def broken_strategies() -> dict[str, str]:
    """Installed strategies that failed to import or validate, with the reason."""
    return registry.load().broken


def strategy_names() -> tuple[str, ...]:
    return tuple(registry.strategies())
