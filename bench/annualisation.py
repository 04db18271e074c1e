"""What the yearly figures say on short ranges and on session data, printed as figures:

1. A fortnight that made +3 % (hourly bars, round the clock, held long): total return, CAGR and
   Calmar as a result reports them.
2. Stock-like session data (1-minute bars, 14:30-21:00 UTC on weekdays, 60 sessions of a
   seeded random walk): the bars per year the data is annualised at, and the Sharpe ratio of
   one session cut from it (the last one, as a holdout) and of the last 12 sessions (a 20 %
   holdout), beside the Sharpe ratio at the data's true rate (5 sessions of 390 bars a week).
3. 24/7 1-minute data: its bars per year, which must stay 525,960.

    .venv/bin/python bench/annualisation.py
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.backtest import Costs, backtest
from app.engine.candles import Candles, synthetic

SESSION = 390
TRUE_SESSION_YEAR = 5 * SESSION * 365.25 / 7


def fortnight() -> None:
    n = 14 * 24
    p = 100.0 * 1.03 ** (np.arange(n) / (n - 1))
    low = p * 0.999
    low[150:160] *= 0.99
    close = p.copy()
    close[150:160] = low[150:160]
    t = 1_700_000_000_000 + 3_600_000 * np.arange(n, dtype=np.int64)
    c = Candles("1h", t, p.copy(), p * 1.001, low, close, np.ones(n))
    m = backtest(c, np.ones(n, dtype=np.int8), Costs(0, 0)).metrics
    cagr, calmar = m["cagr"], m["calmar"]
    print(
        f"14-day holdout, +3 %: total return {m['total_return']:+.2%}, "
        f"CAGR {'null' if cagr is None else f'{cagr:+.1%}'}, Calmar {'null' if calmar is None else f'{calmar:.1f}'}"
    )
    if m.get("null_reasons", {}).get("cagr"):
        print(f"  reason: {m['null_reasons']['cagr']}")


def session_data() -> Candles:
    opens, day = [], date(2024, 1, 8)
    while len(opens) < 60:
        if day.weekday() < 5:
            opens.append(int(datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC).timestamp() * 1000))
        day += timedelta(days=1)
    times = (np.array(opens)[:, None] + 60_000 * np.arange(SESSION)[None, :]).ravel()
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.00005, 0.001, len(times))))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.0005, np.minimum(open_, close) * 0.9995
    return Candles("1m", times.astype(np.int64), open_, high, low, close, np.ones(len(times)))


def sessions() -> None:
    data = session_data()
    print(f"session data: {data.periods_per_year:,.0f} bars a year (true: {TRUE_SESSION_YEAR:,.0f})")
    for label, k in (("one session", 1), ("12 sessions", 12)):
        part = data[len(data) - k * SESSION :]
        result = backtest(part, np.ones(len(part), dtype=np.int8), Costs(0, 0))
        r = result.equity / np.r_[1.0, result.equity[:-1]] - 1.0
        true = r.mean() / r.std(ddof=1) * math.sqrt(TRUE_SESSION_YEAR)
        reported = result.metrics["sharpe"]
        print(
            f"  {label}: annualised at {part.periods_per_year:,.0f} bars a year, Sharpe {reported:.2f} "
            f"(at the true rate {true:.2f}: ×{reported / true:.2f})"
        )


def round_the_clock() -> None:
    c = synthetic(30_000, 1)
    print(f"24/7 1m data: {c.periods_per_year:,.2f} bars a year; a third of it: {c[:10_000].periods_per_year:,.2f}")


if __name__ == "__main__":
    fortnight()
    sessions()
    round_the_clock()
