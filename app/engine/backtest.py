"""The backtester: the hot loop of optimisation. `backtest` runs the model below in one compiled
pass over the bars (`kernel`); `numpy_backtest` computes the same with whole-array NumPy
operations (`simulate`, `metrics_of`), the reference the kernel is tested against.

The position model (tests/engine/reference.py implements the same, bar by bar, with cash and
a quantity; docs/backtesting.md explains it):
- `positions[t]` ∈ {-1, 0, +1} is decided on bar t's close and filled at bar t+1's open, so
  the position held during bar i is `held[i] = positions[i-1]` (flat on bar 0).
- A trade is a maximal run of bars holding the same non-zero side. It is entered at the open
  of its first bar with a fixed quantity `q = side·E/open` where E is the equity just before
  the fill (notional = equity), and left at the open of the bar after its last (or at the last
  close if still open at the end: the backtest always ends flat). A flip closes one trade and
  opens the next at the same open. The quantity never changes during a trade.
- Costs: each fill pays (fee_bps + slippage_bps) of its notional, |q|·price.
- Equity starts at 1, is cash + q·price, and is reported at every close (the last one after
  the final close-out). Over a trade entered with equity E at price p0, equity at price p is
  E·(1 − c + side·(p/p0 − 1)); the trade's return is E_after_exit / E_before_entry − 1, so
  compounding the trades' returns (flat periods earn nothing) gives the final equity exactly.
- Stops: `exits[i]`, where finite, is a price within bar i's range at which the position held
  during bar i was closed within that bar (a resting stop order). The trade then ends at that
  price instead of the next open, equity at bar i's close is after that exit, and the position
  decided on bar i's close must differ from the one held during it.
- Ruin: equity is marked at every open and close of a trade's bars and after each fill. The
  first mark at or below 0 ends the run: that trade is closed there with a return of −100 %,
  equity is 0 from that bar on, and later positions are ignored.

Metrics (a metric that is undefined is None, never NaN, inf or a 0 stand-in, and
`null_reasons` maps each None metric to why, in words):
- total_return = final equity − 1, always given; cagr = final equity^(1/years) − 1 with years
  the calendar span of the candles (`Candles.span_years`), None over a span shorter than
  MIN_ANNUALISED_DAYS (a fortnight's +3 % is not a yearly +120 %) or if it overflows.
- sharpe = mean / sample standard deviation of the per-bar returns × √(periods per year), the
  periods per year being the bars a year of the data holds (`Candles.periods_per_year`: trading
  sessions, not 24/7, for session data); None without variance.
- max_drawdown from the running peak (starting at 1); calmar = cagr / max_drawdown, None
  without a CAGR or a drawdown; win_rate = share of trades with a positive return, None without
  trades; exposure = share of bars holding a position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.candles import YEAR_MS, Candles
from app.engine.costs import Costs
from app.engine.errors import InvalidPositions

__all__ = ["BacktestResult", "Costs", "backtest", "numpy_backtest"]

MIN_ANNUALISED_DAYS = 90  # CAGR and Calmar need at least this calendar span


@dataclass
class BacktestResult:
    metrics: dict[str, float | int | None]
    equity: np.ndarray
    open_time: np.ndarray
    trades: dict[str, np.ndarray] = field(repr=False)
    # What the search's statistics need of the per-bar returns, where the backtest measured it on
    # its way (`optimise.evaluate` computes it from `equity` otherwise): "bar_sharpe", "blocks".
    bar_stats: dict[str, Any] | None = field(default=None, repr=False)

    def equity_curve(self, max_points: int = 500) -> list[list[float]]:
        n = len(self.equity)
        if n == 0:
            return []
        idx = np.unique(np.linspace(0, n - 1, min(max_points, n)).astype(np.int64))
        return [[int(self.open_time[i]), round(float(self.equity[i]), 8)] for i in idx]


def _numbers_per_candle(positions: Any, n: int) -> np.ndarray:
    """Positions as an array of one number per candle (values unchecked), or InvalidPositions."""
    p = np.asarray(positions)
    if p.ndim != 1 or len(p) != n:
        raise InvalidPositions(f"positions must be one value per candle: got shape {p.shape} for {n} candles")
    if p.dtype.kind not in "iuf":
        raise InvalidPositions(f"positions must be numbers in {{-1, 0, 1}}, got dtype {p.dtype}")
    return p


def checked_positions(positions: Any, n: int) -> np.ndarray:
    """Positions as float64, or InvalidPositions naming the first bad value."""
    p = _numbers_per_candle(positions, n)
    if p.dtype.kind in "iu" and (n == 0 or (p.min() >= -1 and p.max() <= 1)):
        return p.astype(np.float64)
    ok = (p == 0) | (p == 1) | (p == -1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise InvalidPositions(f"position at bar {i} is {p[i].item()!r}; positions must be -1, 0 or 1")
    return p.astype(np.float64)


def checked_exits(exits: Any, candles: Candles, positions: np.ndarray, held: np.ndarray) -> np.ndarray | None:
    """Stop exits as float64 (NaN: none), or InvalidPositions naming the first bad one."""
    if exits is None:
        return None
    x = np.asarray(exits, dtype=np.float64)
    if x.shape != positions.shape:
        raise InvalidPositions(f"exit prices must be one value per candle: got shape {x.shape}")
    at = np.flatnonzero(~np.isnan(x))
    if not len(at):
        return None
    with np.errstate(invalid="ignore"):
        bad = ~((x[at] >= candles.low[at]) & (x[at] <= candles.high[at]))
    bad |= held[at] == 0
    bad |= positions[at] == held[at]
    if bad.any():
        i = int(at[np.argmax(bad)])
        raise InvalidPositions(
            f"exit price at bar {i} is {x[i]!r}: a stop exit must lie within the bar's low and high, close a "
            "position held during the bar, and be followed by a different position"
        )
    return x


def held_positions(positions: np.ndarray) -> np.ndarray:
    held = np.zeros(len(positions), dtype=np.float64)
    held[1:] = positions[:-1]
    return held


def _marks(price: np.ndarray, p0: np.ndarray, held: np.ndarray, c: float, out: np.ndarray | None = None) -> np.ndarray:
    """Equity at `price` over equity before the trade's entry: 1 − c + side·(price/p0 − 1)."""
    m = np.divide(price, p0, out=out)
    m -= 1.0
    m *= held
    m += 1.0 - c
    return m


def simulate(
    candles: Candles, held: np.ndarray, costs: Costs, exits: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Equity at every close, the held positions (zero after ruin) and the trades."""
    n, c = len(held), costs.per_side
    edges = np.flatnonzero(np.diff(held, prepend=0.0, append=0.0))  # where the held side changes, in [0, n]
    starts = edges[:-1][held[edges[:-1]] != 0] if len(edges) > 1 else edges[:0]
    ends = edges[np.searchsorted(edges, starts, side="right")] if len(starts) else starts
    side = held[starts]
    entry = candles.open[starts]
    exit_price = candles.open[np.minimum(ends, n - 1)]
    exit_price = np.where(ends < n, exit_price, candles.close[-1])
    stopped = np.zeros(len(starts), dtype=bool)
    if exits is not None and len(starts):
        stop = exits[ends - 1]  # at the trade's last bar
        stopped = ~np.isnan(stop)
        exit_price = np.where(stopped, stop, exit_price)
    ratio = exit_price / entry
    ret = side * (ratio - 1.0) - c * (1.0 + ratio)
    growth = np.r_[1.0, np.cumprod(1.0 + ret)]  # equity before trade k is growth[k]

    started = np.zeros(n, dtype=np.int64)
    started[starts] = 1
    k = np.cumsum(started, out=started)  # trades entered up to and including each bar
    in_trade = held != 0
    if len(starts):
        this = np.maximum(k - 1, 0)
        p0 = entry[this]
        mark_close = _marks(candles.close, p0, held, c)
        last = ends[stopped] - 1
        if len(last):  # a stopped bar is marked at its stop, and closes flat after the exit
            mark_close[last] = _marks(exit_price[stopped], p0[last], held[last], c)
        mark_open = _marks(candles.open, p0, held, c, out=p0)
        equity = growth[k]
        np.multiply(growth[this], mark_close, out=equity, where=in_trade)
        if len(last):
            equity[last] = growth[k[last]]
    else:
        equity = np.ones(n)
    if len(starts) and ends[-1] == n:
        equity[-1] = growth[-1]  # the final close-out, net of its cost

    ruin: list[tuple[int, int]] = []  # (time key, trade index): 2·bar for an open, 2·bar+1 for a close
    if len(starts):
        for marks, at_close in ((mark_close, 1), (mark_open, 0)):
            bad = np.flatnonzero(marks <= 0)  # 1 − c > 0 on flat bars
            if len(bad):
                ruin.append((2 * int(bad[0]) + at_close, int(k[bad[0]]) - 1))
        bad_exit = np.flatnonzero(1.0 + ret <= 0)
        if len(bad_exit):
            b = int(ends[bad_exit[0]])
            key = 2 * b - 1 if stopped[bad_exit[0]] else (2 * b if b < n else 2 * n - 1)  # a stop: in its bar
            ruin.append((key, int(bad_exit[0])))
    if ruin:
        key, ruined = min(ruin)
        bar, exit_at = key // 2, key // 2 + key % 2
        at_its_stop = bool(stopped[ruined]) and key == 2 * int(ends[ruined]) - 1
        equity[bar:] = 0.0
        held = held.copy()
        held[exit_at:] = 0.0
        keep = slice(0, ruined + 1)
        starts, side, entry = starts[keep], side[keep], entry[keep]
        ends, exit_price, ret = ends[keep].copy(), exit_price[keep].copy(), ret[keep].copy()
        stopped = stopped[keep].copy()
        stopped[-1] = False
        ends[-1] = exit_at
        if not at_its_stop:
            exit_price[-1] = candles.close[bar] if exit_at > bar else candles.open[bar]
        ret[-1] = -1.0
    trades = {
        "entry": starts,
        "exit": ends,
        "side": side,
        "entry_price": entry,
        "exit_price": exit_price,
        "ret": ret,
        "stopped": stopped[: len(starts)],
    }
    return equity, held, trades


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _days(days: float) -> str:
    return f"{days:.1f} days" if days < 2 else f"{days:.0f} days"


def metrics_of(candles: Candles, equity: np.ndarray, held: np.ndarray, trade_returns: np.ndarray) -> dict[str, Any]:
    """The metrics from whole arrays (the reference the compiled kernel is tested against)."""
    n = len(equity)
    prev = np.r_[1.0, equity[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(prev > 0, equity / prev - 1.0, 0.0)  # nothing left after ruin: 0
    sd = float(returns.std(ddof=1)) if n > 1 else 0.0
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return assembled_metrics(
        candles,
        final=float(equity[-1]),
        mean=float(returns.mean()),
        sd=sd,
        max_dd=float(np.max(1.0 - equity / peak)),
        n_trades=len(trade_returns),
        win_rate=float(np.mean(trade_returns > 0)) if len(trade_returns) else None,
        exposure=float(np.mean(held != 0)),
    )


def assembled_metrics(
    candles: Candles,
    *,
    final: float,
    mean: float,
    sd: float,
    max_dd: float,
    n_trades: int,
    win_rate: float | None,
    exposure: float,
) -> dict[str, Any]:
    """The metrics dictionary (with `null_reasons`) from the sums of one backtest of `candles`:
    final equity, mean and sample standard deviation of the per-bar returns, max drawdown."""
    n = len(candles)
    reasons: dict[str, str] = {}
    days = candles.span_years * YEAR_MS / 86_400_000
    if days < MIN_ANNUALISED_DAYS:
        cagr = None
        reasons["cagr"] = (
            f"not annualised: {_days(days)} of data, under the {MIN_ANNUALISED_DAYS} days a yearly figure needs"
        )
    else:
        with np.errstate(over="ignore"):
            cagr = _finite_or_none(float(np.float64(final) ** (1.0 / candles.span_years)) - 1.0)
        if cagr is None:
            reasons["cagr"] = "too large to represent"
    sharpe = _finite_or_none(mean / sd * math.sqrt(candles.periods_per_year)) if sd > 0 else None
    if sharpe is None:
        reasons["sharpe"] = "the returns do not vary" if sd == 0 else "too large to represent"
    if cagr is None:
        reasons["calmar"] = reasons["cagr"]
    elif not max_dd > 0:
        reasons["calmar"] = "no drawdown to divide by"
    if not n_trades:
        reasons["win_rate"] = "no trades"
    return {
        "total_return": _finite_or_none(final - 1.0),
        "cagr": cagr,
        "sharpe": sharpe,
        "max_drawdown": max_dd,
        "calmar": cagr / max_dd if cagr is not None and max_dd > 0 else None,
        "win_rate": win_rate,
        "n_trades": int(n_trades),
        "exposure": exposure,
        "n_bars": int(n),
        "null_reasons": reasons,
    }


def numpy_backtest(
    candles: Candles, positions: np.ndarray, costs: Costs = Costs(), exits: np.ndarray | None = None
) -> BacktestResult:
    """`backtest` with whole-array NumPy operations (`simulate`, `metrics_of`): the reference
    the compiled kernel is tested against, number for number."""
    n = len(candles)
    if n == 0:
        raise InvalidPositions("no candles to backtest")
    candles.validate()
    wanted = checked_positions(positions, n)
    held = held_positions(wanted)
    equity, held, trades = simulate(candles, held, costs, checked_exits(exits, candles, wanted, held))
    metrics = metrics_of(candles, equity, held, trades["ret"])
    return BacktestResult(metrics=metrics, equity=equity, open_time=candles.open_time, trades=trades)


def _kernel_positions(positions: Any, n: int) -> np.ndarray:
    """Positions as int8 or float64 arrays (the kernel checks their values), or InvalidPositions."""
    p = _numbers_per_candle(positions, n)
    return p if p.dtype in (np.int8, np.float64) else p.astype(np.float64)


def backtest(
    candles: Candles, positions: np.ndarray, costs: Costs = Costs(), exits: np.ndarray | None = None
) -> BacktestResult:
    """Validate the candles, positions and stop exits, then simulate and measure in one compiled
    pass (`kernel`; see the module docstring)."""
    from app.engine import kernel  # numba loads on the first backtest, not with the settings

    n = len(candles)
    if n == 0:
        raise InvalidPositions("no candles to backtest")
    candles.validate()
    p = _kernel_positions(positions, n)
    if exits is not None:
        wanted = checked_positions(p, n)
        exits = checked_exits(exits, candles, wanted, held_positions(wanted))
    bad, equity, trades, held_bars, wins, max_dd, mean, m2, blocks = kernel.run(
        candles.open, candles.close, p, exits, costs.per_side
    )
    if bad >= 0:
        checked_positions(np.asarray(positions), n)  # raises, naming the bar
    n_trades = len(trades["ret"])
    metrics = assembled_metrics(
        candles,
        final=float(equity[-1]),
        mean=mean,
        sd=math.sqrt(m2 / (n - 1)) if n > 1 else 0.0,
        max_dd=max_dd,
        n_trades=n_trades,
        win_rate=wins / n_trades if n_trades else None,
        exposure=held_bars / n,
    )
    population_sd = math.sqrt(m2 / n)
    bar_sharpe = mean / population_sd if n > 1 and population_sd > 0 else None  # as `stats.sharpe`
    bar_stats = {
        "bar_sharpe": bar_sharpe if bar_sharpe is not None and math.isfinite(bar_sharpe) else None,
        "blocks": blocks,
    }
    return BacktestResult(metrics, equity, candles.open_time, trades, bar_stats)
