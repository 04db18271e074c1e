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


NO_EDGE = "no_edge"
DOES_NOT_SURVIVE = "does_not_survive"
WORTH_A_CLOSER_LOOK = "worth_a_closer_look"
HEADLINES = {
    NO_EDGE: "No edge",
    DOES_NOT_SURVIVE: "An edge in training that does not survive",
    WORTH_A_CLOSER_LOOK: "Worth a closer look",
}


@dataclass
class Statistics:
    n_trials: int
    deflated_sharpe: float | None
    pbo: float | None
    walk_forward_efficiency: float | None
    verdict: str
    overfit: bool
    reason: str | None
    kind: str = WORTH_A_CLOSER_LOOK
    n_feasible: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Evidence:
    """What a verdict is decided on: the chosen configuration's metrics and buy-and-hold's, in
    training and out of sample, and the statistics of the search."""

    train: dict[str, Any]
    train_benchmark: dict[str, Any]
    validation: dict[str, Any]
    validation_benchmark: dict[str, Any]
    n_trials: int  # every trial run (all windows in walk-forward): the search's size in words
    n_feasible: int
    deflated_sharpe: float | None
    dsr_trials: int  # the N the deflated Sharpe ratio allowed for
    pbo: float | None
    wfe: float | None = None
    thin: str | None = None  # words for an out-of-sample sample too small to judge


def _pct(x: float | None) -> str:
    return "undefined" if x is None else f"{x:+.1%}"


def _num(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.2f}"


def _tried(e: Evidence) -> str:
    """The trials the deflated Sharpe ratio allowed for, in words."""
    if e.dsr_trials == e.n_trials:
        return f"{e.dsr_trials} parameter sets tried"
    return f"{e.dsr_trials} parameter sets tried in the last window ({e.n_trials} in all)"


def _no_edge(e: Evidence) -> list[str]:
    """Reasons the chosen configuration shows no edge even in training: it does not beat cash
    (loses money or has a Sharpe ratio at or below 0) or does not beat buy-and-hold."""
    ret, sharpe, bench = e.train.get("total_return"), e.train.get("sharpe"), e.train_benchmark.get("total_return")
    if ret is None or ret <= 0 or sharpe is None or sharpe <= 0:
        return [
            f"the best of the {e.n_trials} parameter sets tried loses even in training "
            f"(Sharpe {_num(sharpe)}, total return {_pct(ret)}), so no configuration had an edge to find"
        ]
    if bench is not None and ret <= bench:
        return [
            f"in training the best of the {e.n_trials} parameter sets tried made {_pct(ret)}, "
            f"no better than buying and holding ({_pct(bench)})"
        ]
    return []


def _does_not_survive(e: Evidence) -> list[str]:
    reasons = [e.thin] if e.thin else []
    oos, bench = e.validation.get("total_return"), e.validation_benchmark.get("total_return")
    if oos is None or oos <= 0:
        reasons.append(f"out of sample it made {_pct(oos)} (Sharpe {_num(e.validation.get('sharpe'))})")
    elif bench is not None and oos <= bench:
        reasons.append(f"out of sample it made {_pct(oos)}, less than buying and holding ({_pct(bench)})")
    if e.deflated_sharpe is None:
        reasons.append("the deflated Sharpe ratio is undefined (the training returns do not vary)")
    elif e.deflated_sharpe < DSR_CONFIDENCE:
        reasons.append(
            f"allowing for the {_tried(e)}, the chance that the training Sharpe "
            f"ratio reflects skill rather than luck is {e.deflated_sharpe:.0%} "
            f"(at least {DSR_CONFIDENCE:.0%} is required)"
        )
    if e.pbo is not None and e.pbo >= PBO_LIMIT:
        reasons.append(
            f"the best in-sample parameter set ranked in the bottom half out of sample in {e.pbo:.0%} of "
            f"cross-validation splits (the probability of backtest overfitting; under {PBO_LIMIT:.0%} is required)"
        )
    return reasons


def judge(e: Evidence) -> Statistics:
    """A verdict of one of three kinds, worded for a trader, with the figures that decide it:
    no edge (not even in training), an edge in training that does not survive (out of sample,
    the deflated Sharpe ratio or the PBO says it is luck), or worth a closer look. `overfit` is
    the second kind."""
    reasons = _no_edge(e)
    kind = NO_EDGE
    if not reasons:
        reasons = _does_not_survive(e)
        kind = DOES_NOT_SURVIVE if reasons else WORTH_A_CLOSER_LOOK
    if reasons:
        reason = "; ".join(reasons)
        verdict = f"{HEADLINES[kind]}: {reason}."
    else:
        reason = None
        parts = [
            f"in training it made {_pct(e.train.get('total_return'))} against buying and holding's "
            f"{_pct(e.train_benchmark.get('total_return'))}, and out of sample "
            f"{_pct(e.validation.get('total_return'))} against {_pct(e.validation_benchmark.get('total_return'))}",
            f"the deflated Sharpe ratio is {e.deflated_sharpe:.0%} allowing for the {_tried(e)}",
        ]
        if e.pbo is not None:
            parts.append(f"the probability of backtest overfitting is {e.pbo:.0%}")
        verdict = f"{HEADLINES[kind]}: " + "; ".join(parts) + ". Check it on more data before trading it."
    return Statistics(
        e.n_trials, e.deflated_sharpe, e.pbo, e.wfe, verdict, kind == DOES_NOT_SURVIVE, reason, kind, e.n_feasible
    )


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
