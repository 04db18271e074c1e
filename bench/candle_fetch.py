"""The fetch rate of `trad candles fetch` against the local exchange (tests/exchange_server.py),
with a throwaway PostgreSQL started here.

    .venv/bin/python bench/candle_fetch.py [--days 30]

Fetches `--days` of 1-minute BTC/USDT bars twice into fresh symbols: once as the command does,
with ccxt spacing requests by Binance's rate limit, and once with the rate limit off (what the
client, the local server and the batched writes cost by themselves). Prints bars per second for
both, and how many requests a year of 1-minute bars takes at the exchange's page size and how
long that is at the rate-limited pace.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.exchanges import Exchange  # noqa: E402
from app.services import candle_fetch  # noqa: E402
from app.training.catalog import SYMBOL  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402

MIN = 60_000
YEAR_BARS = 525_600  # 365 days of 1-minute bars


def run(database_url: str, exchange_url: str, start_ms: int, bars: int, symbol: str, limited: bool):
    exchange = Exchange("binance", base_url=exchange_url)
    exchange.client.enableRateLimit = limited
    began = time.perf_counter()
    report = candle_fetch.fetch(
        database_url,
        exchange,
        "BTC/USDT",
        "1m",
        symbol_pattern=SYMBOL,
        since=datetime.fromtimestamp(start_ms / 1000, UTC),
        until=datetime.fromtimestamp((start_ms + bars * MIN) / 1000, UTC),
        store_as=symbol,
    )
    took = time.perf_counter() - began
    return report, took


@contextlib.contextmanager
def exchange_process(start_ms: int):
    """The local exchange in a process of its own, so it does not share the client's interpreter."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    since = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")
    server = ROOT / "tests" / "exchange_server.py"
    command = [sys.executable, str(server), "--port", str(port), "--since", since]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # listening
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    bars = args.days * 24 * 60
    now = int(time.time() * 1000) // MIN * MIN
    start = now - (args.days + 2) * 24 * 60 * MIN
    with throwaway_servers("candle-fetch", redis=False) as (_, pg, _rs), exchange_process(start) as url:
        results = {}
        for symbol, limited in (("BTCUSDTA", True), ("BTCUSDTB", False)):
            report, took = run(pg.url, url, start, bars, symbol, limited)
            assert report.progress.inserted == bars, report.progress
            results[limited] = (report, took)
        page = results[True][0].market.page_limit
        rate_limit_ms = Exchange("binance").client.rateLimit
    for limited, (report, took) in results.items():
        p = report.progress
        label = "rate-limited (as the command runs)" if limited else "rate limit off (client, server, writes)"
        print(f"{label}: {p.fetched} bars in {p.requests} requests, {took:.1f} s: {p.fetched / took:,.0f} bars/s")
    requests = math.ceil(YEAR_BARS / page)
    per_request = results[True][1] / results[True][0].progress.requests
    print(
        f"a year of 1m bars ({YEAR_BARS:,}) at binance's page of {page} bars: {requests} requests; "
        f"at the rate-limited pace ({per_request * 1000:.0f} ms a request; ccxt spaces binance's "
        f"requests by {rate_limit_ms} ms times their weight) about {requests * per_request:.0f} s"
    )


if __name__ == "__main__":
    main()
