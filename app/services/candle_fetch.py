"""Candles from an exchange into the candles table (`trad candles fetch`).

Pages forward from the last stored bar (or `since`), one exchange request at a time, and writes
every `batch_bars` bars in a transaction of their own: an interrupted fetch keeps whole batches,
and the next run resumes after the last stored bar, so a second run fetches only what is new.
The bar still open (open time + one step after now) is never stored. Missing bars between two
fetched ones (the exchange had none: an outage, a halted market) are counted as gaps.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.clock import utcnow
from app.db import transaction
from app.engine.candles import SYNTHETIC_SOURCE, TIMEFRAMES
from app.exchanges import Exchange, ExchangeInputError, Market, Row
from app.repositories import candles as candles_repo


class FetchInputError(Exception):
    """Bad input, found before anything is written; `field` names the option."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Gap:
    after_ms: int  # the last bar before the gap
    before_ms: int  # the first bar after it
    missing: int  # bars the exchange has none of in between


@dataclass
class FetchProgress:
    start_ms: int
    end_ms: int  # the fetch stops before this open time
    cursor_ms: int  # the next open time to ask for
    fetched: int = 0  # closed bars received in range
    stored: int = 0  # bars written (whole batches)
    inserted: int = 0  # of those, new ones
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        span = self.end_ms - self.start_ms
        return 1.0 if span <= 0 else min(1.0, max(0.0, (self.cursor_ms - self.start_ms) / span))

    @property
    def eta_s(self) -> float | None:
        done = self.fraction
        if done <= 0:
            return None
        return (time.monotonic() - self.started) * (1 - done) / done


@dataclass(frozen=True)
class FetchReport:
    market: Market
    symbol: str  # trad's symbol the bars are stored under
    source: str
    progress: FetchProgress
    first_ms: int | None  # first and last bar fetched
    last_ms: int | None
    resumed_after_ms: int | None  # the last bar stored before this run, when it continued from it
    gaps: list[Gap]
    open_bar_ms: int | None  # the still-open bar the exchange sent, left out
    up_to_date: bool  # nothing to ask for: the range was already stored
    stored_from_ms: int | None = None  # `since` was before the first stored bar, this one: not filled in

    @property
    def largest_gap(self) -> Gap | None:
        return max(self.gaps, key=lambda g: g.missing, default=None)


def _ms(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp() * 1000)


def utc_text(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%dT%H:%MZ}"


def fetch(
    database_url: str,
    exchange: Exchange,
    symbol: str,
    timeframe: str,
    *,
    symbol_pattern: re.Pattern[str],
    since: datetime | None = None,
    until: datetime | None = None,
    store_as: str | None = None,
    batch_bars: int = 10_000,
    progress: Callable[[FetchProgress], None] = lambda p: None,
    now: Callable[[], datetime] = utcnow,
) -> FetchReport:
    """Fetch `symbol` (the exchange's, e.g. BTC/USDT) at `timeframe` into trad's candles under
    `store_as` (default: base and quote run together, BTCUSDT; either must match
    `symbol_pattern`, the catalog's), source = the exchange's id.
    FetchInputError for bad input, before anything is written; ExchangeInputError and
    ExchangeUnavailable from the exchange."""
    now_ms = _ms(now())
    if timeframe not in TIMEFRAMES:
        raise FetchInputError(f"timeframe {timeframe!r} is not one trad stores ({' '.join(TIMEFRAMES)})", "timeframe")
    step = TIMEFRAMES[timeframe]
    since_ms = None if since is None else _ms(since)
    until_ms = None if until is None else _ms(until)
    if since_ms is not None and since_ms >= now_ms:
        raise FetchInputError(f"since {utc_text(since_ms)} is in the future (now {utc_text(now_ms)})", "since")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise FetchInputError(f"since {utc_text(since_ms)} is not before until {utc_text(until_ms)}", "until")
    if store_as is not None and not symbol_pattern.match(store_as):
        raise FetchInputError(f"symbol {store_as!r} must be 2-20 capital letters or digits, e.g. BTCUSDT", "as")

    market = exchange.market(symbol, timeframe)
    target = store_as or re.sub(r"[^A-Z0-9]", "", market.plain.upper())
    if not symbol_pattern.match(target):
        raise FetchInputError(f"{symbol} maps to {target!r}, not a trad symbol; name one with --as", "as")
    with transaction(database_url) as session:
        stored = candles_repo.span(session, target, timeframe)
    if SYNTHETIC_SOURCE in stored.sources:
        raise FetchInputError(
            f"{target} {timeframe} holds synthetic candles; store {market.exchange}'s under another symbol with --as",
            "as",
        )
    if since_ms is None and stored.last_ms is None:
        raise FetchInputError(
            f"no {target} {timeframe} candles are stored yet: say where to start with --since", "since"
        )

    # The first bar to ask for: after the last stored one, unless `since` is later still. A fetch
    # only ever extends the stored bars forward, so a resumed one never leaves a hole behind it.
    resume_ms = None if stored.last_ms is None else stored.last_ms + step
    start_ms = -(-since_ms // step) * step if since_ms is not None else resume_ms
    resumed_after = None
    if resume_ms is not None and start_ms <= resume_ms:
        start_ms, resumed_after = resume_ms, stored.last_ms
    stored_first = stored.first_ms
    not_before = stored_first if stored_first is not None and since_ms is not None and since_ms < stored_first else None
    end_ms = min(until_ms if until_ms is not None else now_ms, now_ms)  # open times < end_ms
    state = FetchProgress(start_ms=start_ms, end_ms=end_ms, cursor_ms=start_ms)
    source = market.exchange
    gaps: list[Gap] = []
    first = last = open_bar = None
    previous = resumed_after
    batch: list[Row] = []

    def write() -> None:
        with transaction(database_url) as session:
            state.inserted += candles_repo.insert(session, target, timeframe, batch, source=source)
        state.stored += len(batch)
        batch.clear()

    while state.cursor_ms < end_ms:
        before = exchange.requests
        page = exchange.candles(market, state.cursor_ms)
        state.requests += exchange.requests - before
        closed_before = _ms(now())
        rows = []
        for row in page:
            t = row[0]
            if t < state.cursor_ms or t >= end_ms:
                continue
            if t + step > closed_before:
                open_bar = t
                continue
            rows.append(row)
        if not rows:
            break  # the exchange has nothing more in range (only the open bar, or an empty page)
        for row in rows:
            t = row[0]
            if previous is not None and t - previous > step:
                gaps.append(Gap(previous, t, (t - previous) // step - 1))
            previous = t
        first = rows[0][0] if first is None else first
        last = rows[-1][0]
        batch.extend(rows)
        state.fetched += len(rows)
        state.cursor_ms = last + step
        if len(batch) >= batch_bars:
            write()
        progress(state)
    if batch:
        write()
    state.cursor_ms = max(state.cursor_ms, end_ms)  # done: nothing more in range
    progress(state)
    return FetchReport(
        market=market,
        symbol=target,
        source=source,
        progress=state,
        first_ms=first,
        last_ms=last,
        resumed_after_ms=resumed_after,
        gaps=gaps,
        open_bar_ms=open_bar,
        up_to_date=start_ms >= end_ms,
        stored_from_ms=not_before,
    )


__all__ = ["ExchangeInputError", "FetchInputError", "FetchProgress", "FetchReport", "Gap", "fetch", "utc_text"]
