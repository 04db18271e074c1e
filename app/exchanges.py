"""Exchanges' public market data through ccxt: which exchanges, symbols and timeframes exist, and
one page of candles at a time. The only module that imports ccxt.

ccxt spaces requests by the exchange's own rate limit (`enableRateLimit`). Network errors, 429
and 5xx answers (what ccxt calls `OperationFailed`: may succeed if tried again) are retried with
exponential backoff (`app.retry`), waiting at least as long as the exchange's `Retry-After`
asks, until the retry budget is spent.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import ccxt

from app.retry import retry_until

Row = tuple[int, float, float, float, float, float]  # open time ms UTC, o, h, l, c, v


class ExchangeInputError(Exception):
    """The exchange, symbol or timeframe asked for does not exist; `field` names the option."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


class ExchangeUnavailable(Exception):
    """The exchange did not answer within the retry budget, or refused the request."""


@dataclass(frozen=True)
class Market:
    exchange: str  # ccxt's id, e.g. "binance"
    symbol: str  # the exchange's unified symbol, e.g. "BTC/USDT"
    plain: str  # base and quote run together, e.g. "BTCUSDT"
    timeframe: str
    page_limit: int  # most bars one request returns


def exchange_ids() -> list[str]:
    return list(ccxt.exchanges)


def _with_origin(value, origin: str):
    """Every URL in ccxt's `urls['api']` (a string or nested dicts of them) moved to `origin`."""
    if isinstance(value, dict):
        return {k: _with_origin(v, origin) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("http"):
        target, url = urlsplit(origin), urlsplit(value)
        return urlunsplit((target.scheme, target.netloc, url.path, url.query, url.fragment))
    return value


def _retry_after(exc: Exception, headers) -> float | None:
    """The seconds an exchange's 429 or 5xx answer asked to wait (`Retry-After`, seconds or a date).
    A connection that failed or timed out had no answer: the headers are the previous one's."""
    if type(exc) is ccxt.NetworkError or isinstance(exc, ccxt.RequestTimeout) or not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Exchange:
    """One exchange's client. `base_url` sends every request to another origin (a mirror, or
    the tests' local exchange) with the exchange's own paths."""

    def __init__(
        self,
        exchange_id: str,
        *,
        base_url: str = "",
        retry_budget_s: float = 120.0,
        first_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        on_retry: Callable[[Exception, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if exchange_id not in ccxt.exchanges:
            close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (ccxt knows {len(ccxt.exchanges)} exchanges)"
            raise ExchangeInputError(f"unknown exchange {exchange_id!r}{hint}", "exchange")
        client = getattr(ccxt, exchange_id)({"enableRateLimit": True})
        # Spot markets only: trad's symbols are spot pairs, and it spares the futures markets' requests.
        markets_option = client.options.get("fetchMarkets")
        if isinstance(markets_option, dict) and "types" in markets_option:
            client.options["fetchMarkets"] = {**markets_option, "types": ["spot"]}
        elif isinstance(markets_option, list):
            client.options["fetchMarkets"] = ["spot"]
        if base_url:
            client.urls["api"] = _with_origin(client.urls["api"], base_url.rstrip("/"))
        self.id = exchange_id
        self.client = client
        self.requests = 0  # HTTP requests made, retried ones included
        self._retry = {
            "budget_s": retry_budget_s,
            "first_delay_s": first_delay_s,
            "max_delay_s": max_delay_s,
            "sleep": sleep,
        }
        self._on_retry = on_retry

    def _call(self, call: Callable[[], object]):
        def counted():
            self.requests += 1
            return call()

        def wait_for(exc: Exception, delay: float) -> float:
            asked = _retry_after(exc, self.client.last_response_headers)
            return delay if asked is None else max(delay, asked)

        try:
            return retry_until(
                counted, retry_on=(ccxt.OperationFailed,), on_retry=self._on_retry, wait_for=wait_for, **self._retry
            )
        except ccxt.OperationFailed as exc:
            raise ExchangeUnavailable(
                f"{self.id} did not answer within {self._retry['budget_s']:g}s of retries: {type(exc).__name__} {exc}"
            ) from None
        except ccxt.BaseError as exc:
            raise ExchangeUnavailable(f"{self.id} refused the request: {type(exc).__name__} {exc}") from None

    def market(self, symbol: str, timeframe: str) -> Market:
        """The market for `symbol` at `timeframe`, after loading the exchange's markets;
        ExchangeInputError naming the option if it offers neither."""
        timeframes = self.client.timeframes or {}
        if timeframe not in timeframes:
            raise ExchangeInputError(
                f"{self.id} does not offer timeframe {timeframe!r}; it offers {' '.join(timeframes) or 'none'}",
                "timeframe",
            )
        markets = self._call(self.client.load_markets)
        if symbol not in markets:
            close = difflib.get_close_matches(symbol.upper(), list(markets), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ExchangeInputError(f"{self.id} has no spot market {symbol!r}{hint}", "symbol")
        m = markets[symbol]
        feature = ((self.client.features or {}).get("spot") or {}).get("fetchOHLCV") or {}
        limit = feature.get("limit") or 500
        return Market(self.id, symbol, f"{m['base']}{m['quote']}", timeframe, int(limit))

    def candles(self, market: Market, since_ms: int) -> list[Row]:
        """One page: up to `market.page_limit` bars opening at or after `since_ms`, oldest first."""
        rows = self._call(
            lambda: self.client.fetch_ohlcv(market.symbol, market.timeframe, since=since_ms, limit=market.page_limit)
        )
        return [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5] or 0.0)) for r in rows]
