"""What a saved configuration carries besides its parameters: the equity curve against
buy-and-hold, the out-of-sample trades, and the statistics of the search with a verdict in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.backtest import BacktestResult

MAX_CURVE_POINTS = 2000
DSR_CONFIDENCE = 0.95  # the deflated Sharpe must reach this probability
PBO_LIMIT = 0.5  # at or above: the in-sample winner is as likely as not to be below median out of sample


def stitch(parts: list[np.ndarray]) -> np.ndarray:
    """Chain equity curves that each start from 1: each part is scaled by the previous end."""
    out, level = [], 1.0
    for part in parts:
        out.append(part * level)
        if len(part):
            level = float(out[-1][-1])
    return np.concatenate(out) if out else np.array([])


def equity_curve(
    open_time: np.ndarray, strategy: np.ndarray, benchmark: np.ndarray, max_points: int = MAX_CURVE_POINTS
) -> dict[str, list]:
    n = len(open_time)
    idx = np.unique(np.linspace(0, n - 1, min(max_points, n)).astype(np.int64)) if n else np.array([], dtype=int)
    return {
        "time": [int(open_time[i]) for i in idx],
        "strategy": [round(float(strategy[i]), 8) for i in idx],
        "benchmark": [round(float(benchmark[i]), 8) for i in idx],
    }


def trade_list(result: BacktestResult) -> list[dict[str, Any]]:
    t, times, n = result.trades, result.open_time, len(result.open_time)
    out = []
    for entry, exit_, side, entry_price, exit_price, ret in zip(
        t["entry"], t["exit"], t["side"], t["entry_price"], t["exit_price"], t["ret"], strict=True
    ):
        out.append(
            {
                "entry_time": int(times[int(entry)]),
                "exit_time": int(times[min(int(exit_), n - 1)]),
                "side": "long" if side > 0 else "short",
                "entry_price": float(entry_price),
                "exit_price": float(exit_price),
                "return": float(ret),
            }
        )
    return out


@dataclass
class Statistics:
    n_trials: int
    deflated_sharpe: float | None
    pbo: float | None
    walk_forward_efficiency: float | None
    verdict: str
    overfit: bool
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge(
    n_trials: int,
    n_feasible: int,
    deflated_sharpe: float | None,
    pbo: float | None,
    wfe: float | None = None,
    *,
    thin: str | None = None,
) -> Statistics:
    """The overfit flag from the Deflated Sharpe Ratio and the PBO, with the reason in words.
    `thin` names an out-of-sample sample too small to judge; it also raises the flag."""
    reasons = [thin] if thin else []
    if deflated_sharpe is None:
        reasons.append("the deflated Sharpe ratio is undefined (the returns do not vary)")
    elif deflated_sharpe < DSR_CONFIDENCE:
        reasons.append(
            f"after allowing for the {n_feasible} feasible parameter sets tried, the chance that the "
            f"training Sharpe ratio reflects real skill rather than luck is {deflated_sharpe:.0%} "
            f"(at least {DSR_CONFIDENCE:.0%} is required)"
        )
    if pbo is not None and pbo >= PBO_LIMIT:
        reasons.append(
            f"the best in-sample parameter set ranked in the bottom half out of sample in {pbo:.0%} of "
            f"cross-validation splits (the probability of backtest overfitting; under {PBO_LIMIT:.0%} is required)"
        )
    overfit = bool(reasons)
    reason = "; ".join(reasons) if reasons else None
    if overfit:
        verdict = f"Likely overfitted: {reason}."
    else:
        parts = [f"the deflated Sharpe ratio is {deflated_sharpe:.0%} after {n_feasible} feasible trials"]
        if pbo is not None:
            parts.append(f"the probability of backtest overfitting is {pbo:.0%}")
        verdict = "No sign of overfitting: " + " and ".join(parts) + "."
    return Statistics(n_trials, deflated_sharpe, pbo, wfe, verdict, overfit, reason)


def json_safe(value: Any) -> Any:
    """A copy with NumPy scalars made plain and every non-finite float replaced by None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value
