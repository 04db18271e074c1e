"""What a training request may name: strategies, timeframes, objectives."""

from __future__ import annotations

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
OBJECTIVES = ("sharpe", "total_return", "calmar")


def strategy_names() -> tuple[str, ...]:
    from app.engine.strategies import STRATEGIES

    return tuple(sorted(STRATEGIES))
