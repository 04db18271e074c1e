"""What each fill costs: a fee and slippage, in basis points of its notional. A job names its
own (`fee_bps`, `slippage_bps` on the start); these are the defaults and the bounds. No NumPy
here: the settings and the API read the defaults without loading the engine."""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.engine.errors import InvalidCosts

DEFAULT_FEE_BPS = 10.0
DEFAULT_SLIPPAGE_BPS = 2.0
MAX_COST_BPS = 1000.0  # the most a job may ask for each of fee and slippage: 10 % of a fill


@dataclass(frozen=True)
class Costs:
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidCosts(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.per_side >= 1:
            raise InvalidCosts("fee_bps + slippage_bps must be below 10000 (100 % of a fill)")

    @property
    def per_side(self) -> float:
        return (self.fee_bps + self.slippage_bps) / 10_000.0
