"""Starting a `candles_refresh` job (`POST /api/v2/candles/refresh`, and a schedule whose
template asks for `refresh`). The job runs `candle_fetch.fetch` in a worker (`app.refresh.job`).

What can be checked without asking the exchange is checked here, before anything is written:
the exchange is one ccxt knows, the timeframe one trad stores, the range is in the past, and
there is a first bar to start from (`since`, or the candles already stored). Whether the
exchange lists the symbol and offers the timeframe is known only once it is asked: the job
then fails with a named error, without retrying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app import exchanges
from app.clock import utcnow
from app.engine.candles import SYMBOL_PATTERN, SYNTHETIC_SOURCE, TIMEFRAMES
from app.repositories import candles as candles_repo
from app.services import jobs as jobs_service
from app.services.errors import InvalidRequest
from app.services.jobs import StartResult
from app.settings import Settings
from app.status import Priority

KIND = "candles_refresh"
# The exchange's unified form: BASE/QUOTE, optionally :SETTLE (e.g. BTC/USDT).
EXCHANGE_SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}/[A-Za-z0-9][A-Za-z0-9._-]{0,29}(:[A-Za-z0-9._-]{1,30})?$"


def stored_symbol(exchange_symbol: str) -> str:
    """trad's symbol for an exchange's: base and quote run together (BTC/USDT → BTCUSDT)."""
    return re.sub(r"[^A-Z0-9]", "", exchange_symbol.split(":")[0].upper())


def job_params(
    session: Session,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    since: datetime | None = None,
    until: datetime | None = None,
    store_as: str | None = None,
) -> dict[str, Any]:
    """The refresh job's parameters, checked; InvalidRequest naming the field otherwise."""
    if exchange not in exchanges.exchange_ids():
        raise InvalidRequest(
            f"exchange: unknown exchange {exchange!r}; ccxt's ids are lower case, e.g. binance", "exchange"
        )
    if not re.match(EXCHANGE_SYMBOL_PATTERN, symbol):
        raise InvalidRequest(f"symbol: {symbol!r} is not an exchange symbol such as BTC/USDT", "symbol")
    if timeframe not in TIMEFRAMES:
        raise InvalidRequest(f"timeframe: {timeframe!r} is not one trad stores ({' '.join(TIMEFRAMES)})", "timeframe")
    target = store_as or stored_symbol(symbol)
    if not re.match(SYMBOL_PATTERN, target):
        raise InvalidRequest(f"as: {symbol} maps to {target!r}, not a trad symbol; name one with as", "as")
    now = utcnow()
    if since is not None and since >= now:
        raise InvalidRequest(f"since: {since.isoformat()} is in the future", "since")
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("until: must be after since", "until")
    stored = candles_repo.span(session, target, timeframe)
    if SYNTHETIC_SOURCE in stored.sources:
        raise InvalidRequest(
            f"as: {target} {timeframe} holds synthetic candles; store these under another symbol", "as"
        )
    if since is None and stored.last_ms is None:
        raise InvalidRequest(f"since: no {target} {timeframe} candles are stored yet: say where to start", "since")
    return {
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "since": _json_time(since),
        "until": _json_time(until),
        "as": target,
    }


@dataclass(frozen=True)
class Series:
    """What is stored of one symbol and timeframe."""

    symbol: str
    timeframe: str
    first: datetime
    last: datetime
    bars: int
    sources: list[str]
    last_refresh_at: datetime | None  # when a refresh of it last succeeded


def stored_series(session: Session) -> list[Series]:
    """Every stored symbol and timeframe, with when a refresh last succeeded for it."""
    refreshed = candles_repo.last_refreshes(session)
    return [
        Series(symbol, timeframe, first, last, bars, sorted(sources.split(",")), refreshed.get((symbol, timeframe)))
        for symbol, timeframe, sources, bars, first, last in candles_repo.coverage(session)
    ]


def start(
    session: Session,
    settings: Settings,
    params: dict[str, Any],
    *,
    priority: str = Priority.NORMAL,
    idempotency_key: str | None = None,
) -> StartResult:
    """A queued refresh job (not committed; its dispatch is sent after commit)."""
    return jobs_service.start(
        session, settings, kind=KIND, priority=priority, params=params, idempotency_key=idempotency_key
    )


def _json_time(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat().replace("+00:00", "Z")
