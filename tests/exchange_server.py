"""A local exchange for the fetch tests and the bench: the two Binance public REST endpoints ccxt
calls to fetch candles (`GET /api/v3/exchangeInfo` for the spot markets, `GET /api/v3/klines`),
serving generated candles, with scripted faults. A thread of the test process, no internet.

Candles run from `first_ms` up to the bar open now, which is served too (still open, as the
real exchange does). Prices are a function of the open time, so any two fetches agree.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STEPS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def price(t_ms: int) -> float:
    return round(30_000 + 2_000 * math.sin(t_ms / 3.6e8) + 50 * math.sin(t_ms / 7e6), 2)


def kline(t_ms: int, step_ms: int) -> list:
    o, c = price(t_ms), price(t_ms + step_ms)
    volume = 1 + (t_ms // step_ms) % 7
    return [
        t_ms,
        f"{o}",
        f"{max(o, c) + 5}",
        f"{min(o, c) - 5}",
        f"{c}",
        f"{volume}",
        t_ms + step_ms - 1,
        "0",
        1,
        "0",
        "0",
        "0",
    ]


@dataclass
class Logged:
    at: float  # time.monotonic() when the request arrived
    wall_ms: int  # and the clock's time, ms since the epoch
    path: str
    query: dict[str, str]
    status: int
    bars: list[int] = field(default_factory=list)  # open times served


@dataclass
class ExchangeState:
    first_ms: int
    page_limit: int = 1000
    symbols: dict[str, tuple[str, str]] = field(default_factory=lambda: {"BTCUSDT": ("BTC", "USDT")})
    gaps: list[tuple[int, int]] = field(default_factory=list)  # [lo, hi) of open times never served
    faults: deque = field(default_factory=deque)  # scripted answers for the next kline requests
    drop_from: int | None = None  # every kline request from this (0-based) index on is dropped
    log: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def klines(self) -> list[Logged]:
        return [e for e in self.log if e.path == "/api/v3/klines"]


class _Handler(BaseHTTPRequestHandler):
    state: ExchangeState

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        entry = Logged(time.monotonic(), int(time.time() * 1000), url.path, query, 200)
        with self.state.lock:
            self.state.log.append(entry)
            index = len(self.state.klines()) - 1
            fault = None
            if url.path == "/api/v3/klines":
                if self.state.drop_from is not None and index >= self.state.drop_from:
                    fault = ("drop",)
                elif self.state.faults:
                    fault = self.state.faults.popleft()
        if fault is not None:
            return self._fault(entry, fault)
        if url.path == "/api/v3/exchangeInfo":
            return self._json(entry, 200, self._exchange_info())
        if url.path == "/api/v3/klines":
            return self._klines(entry, query)
        return self._json(entry, 404, {"code": -1, "msg": "not found"})

    def _fault(self, entry: Logged, fault: tuple) -> None:
        kind = fault[0]
        if kind == "429":
            entry.status = 429
            headers = {"Retry-After": str(fault[1])}
            return self._json(entry, 429, {"code": -1003, "msg": "Too many requests"}, headers)
        if kind == "5xx":
            entry.status = fault[1]
            return self._json(entry, fault[1], {"code": -1001, "msg": "Internal error"})
        # "drop": promise a body, send part of it, close the connection
        entry.status = 0
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"[[1704067200000,")
        self.wfile.flush()
        self.close_connection = True

    def _exchange_info(self) -> dict:
        symbols = [
            {
                "symbol": sym,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00", "stepSize": "0.00001"},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
            for sym, (base, quote) in self.state.symbols.items()
        ]
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": symbols}

    def _klines(self, entry: Logged, query: dict[str, str]) -> None:
        symbol, interval = query.get("symbol"), query.get("interval")
        if symbol not in self.state.symbols:
            return self._json(entry, 400, {"code": -1121, "msg": "Invalid symbol."})
        if interval not in STEPS:
            return self._json(entry, 400, {"code": -1120, "msg": "Invalid interval."})
        step = STEPS[interval]
        limit = min(int(query.get("limit", 500)), self.state.page_limit)
        now = entry.wall_ms
        t = max(int(query.get("startTime", self.state.first_ms)), self.state.first_ms)
        t = -(-t // step) * step
        end = min(int(query.get("endTime", now)), now)
        rows = []
        while t <= end and len(rows) < limit:
            if not any(lo <= t < hi for lo, hi in self.state.gaps):
                rows.append(kline(t, step))
            t += step
        entry.bars = [r[0] for r in rows]
        return self._json(entry, 200, rows)

    def _json(self, entry: Logged, status: int, body, headers: dict[str, str] | None = None) -> None:
        entry.status = status
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class ExchangeServer:
    """`with ExchangeServer(first_ms=…) as ex:` → `ex.url` (give it as EXCHANGE_BASE_URL), `ex.state`."""

    def __init__(self, first_ms: int, **state) -> None:
        self.state = ExchangeState(first_ms=first_ms, **state)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ExchangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """`python3 exchange_server.py --port 8765 [--since 2024-01-01]`: serve until stopped (the
    deploy test runs it inside its container for docs/operations.md's fetch recipe)."""
    import argparse
    from datetime import UTC, datetime

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--since", default="2024-01-01", help="the first bar, UTC")
    args = parser.parse_args()
    first = int(datetime.fromisoformat(args.since).replace(tzinfo=UTC).timestamp() * 1000)
    state = ExchangeState(first_ms=first)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print(f"local exchange on http://127.0.0.1:{args.port}, bars from {args.since}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
