"""A deliberately biased strategy: on bar t it goes long when bar t + 1 closes higher than
bar t by more than `threshold` (and short when lower), which no live run can know at t's close.
Its backtest looks excellent; trad's look-ahead check must fail every job that trains it with
`LookaheadBias`. Do not copy it: it shows what the check catches."""

from __future__ import annotations

import numpy as np

from app.engine.strategy import FloatParam, vectorised


@vectorised(
    name="lookahead_biased",
    space=(FloatParam("threshold", 0.0, 0.01, default=0.0),),
    warmup=lambda p: 1,
)
def strategy(candles, params: dict) -> np.ndarray:
    close = candles.close
    following = np.append(close[1:], close[-1])  # the NEXT bar's close: the bias
    move = following / close - 1.0
    return (np.where(move > params["threshold"], 1, 0) - np.where(move < -params["threshold"], 1, 0)).astype(np.int8)
