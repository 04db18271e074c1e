"""`trad candles fetch` against a local exchange (tests/exchange_server.py): the real ccxt client
and the real command, no internet. Paging, resuming, retries (429 with Retry-After, 5xx, a
dropped connection), gaps, the still-open bar, whole batches after an interruption, bad input."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.fetch_line import ProgressWriter
from app.models import Candle
from app.services.candle_fetch import FetchProgress
from tests.exchange_server import ExchangeServer, kline
from tests.support import ROOT, process_env

MIN = 60_000
NOW_MS = int(time.time() * 1000) // MIN * MIN
FIRST_MS = NOW_MS - 20 * 24 * 60 * MIN  # the local exchange's first bar, 20 days ago


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@pytest.fixture
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer(first_ms=FIRST_MS, page_limit=100) as server:
        yield server


def fetch(settings, exchange: ExchangeServer, *args: str, budget_s: float = 20) -> subprocess.CompletedProcess:
    env = process_env(settings) | {"EXCHANGE_BASE_URL": exchange.url, "FETCH_RETRY_BUDGET_S": str(budget_s)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "candles", "fetch", "--exchange", "binance", "--symbol", "BTC/USDT", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def window(bars: int, since: int = FIRST_MS) -> tuple[str, ...]:
    return ("--timeframe", "1m", "--since", iso(since), "--until", iso(since + bars * MIN))


def stored(db, symbol: str = "BTCUSDT") -> list[Candle]:
    db.expire_all()
    return list(db.scalars(select(Candle).where(Candle.symbol == symbol).order_by(Candle.open_time)))


def ms(c: Candle) -> int:
    return int(c.open_time.timestamp() * 1000)


def test_pages_through_the_exchange_and_a_second_run_fetches_only_what_is_new(clean, db, exchange):
    until = FIRST_MS + 2500 * MIN
    first = fetch(clean, exchange, "--timeframe", "1m", "--since", iso(FIRST_MS), "--until", iso(until))
    assert first.returncode == 0, first.stderr
    assert "2500 bars fetched in 25 requests, 2500 new" in first.stdout
    progress = first.stderr.splitlines()  # not a terminal: a plain line per batch written (one here)
    assert len(progress) == 1 and "100.0%  2500 bars fetched  2500 stored  25 requests" in progress[-1], progress
    assert "gaps: none" in first.stdout
    klines = exchange.state.klines()
    assert len(klines) == 25 and all(k.query["limit"] == "1000" for k in klines)  # the exchange's page size
    assert [int(k.query["startTime"]) for k in klines] == [FIRST_MS + i * 100 * MIN for i in range(25)]
    bars = stored(db)
    assert [ms(c) for c in bars] == [FIRST_MS + i * MIN for i in range(2500)]
    assert {c.source for c in bars} == {"binance"} and {c.timeframe for c in bars} == {"1m"}
    for c in (bars[0], bars[1234], bars[-1]):
        _, o, h, lo, cl, v, *_ = kline(ms(c), MIN)
        assert (c.open, c.high, c.low, c.close, c.volume) == tuple(map(float, (o, h, lo, cl, v)))

    again = fetch(clean, exchange, "--timeframe", "1m", "--since", iso(FIRST_MS), "--until", iso(until))
    assert again.returncode == 0, again.stderr
    assert "up to date, nothing to fetch" in again.stdout
    assert len(exchange.state.klines()) == 25  # not one more request for candles

    later = fetch(clean, exchange, "--timeframe", "1m", "--until", iso(until + 250 * MIN))  # resumes, no --since
    assert later.returncode == 0, later.stderr
    assert "250 bars fetched in 3 requests, 250 new" in later.stdout and "resumed after" in later.stdout
    assert int(exchange.state.klines()[25].query["startTime"]) == until
    assert len(stored(db)) == 2750


def test_429_with_retry_after_a_5xx_and_a_dropped_connection_are_retried(clean, db, exchange):
    exchange.state.faults.extend([("429", 2), ("5xx", 503), ("drop",)])
    result = fetch(clean, exchange, *window(500))
    assert result.returncode == 0, result.stderr
    assert "500 bars fetched in 8 requests, 500 new" in result.stdout  # 5 pages + 3 retried answers
    assert [ms(c) for c in stored(db)] == [FIRST_MS + i * MIN for i in range(500)]
    klines = exchange.state.klines()
    assert [k.status for k in klines[:4]] == [429, 503, 0, 200]
    assert klines[1].at - klines[0].at >= 2.0  # waited as long as Retry-After asked, not the first backoff
    retries = [line for line in result.stderr.splitlines() if "retrying in" in line]
    assert [r.split(":")[0] for r in retries] == ["DDoSProtection", "OperationFailed", "NetworkError"], retries
    assert retries[0].endswith("retrying in 2.0s")


def test_gaps_are_counted_and_the_largest_reported(clean, db, exchange):
    exchange.state.gaps = [(FIRST_MS + 300 * MIN, FIRST_MS + 337 * MIN), (FIRST_MS + 700 * MIN, FIRST_MS + 705 * MIN)]
    result = fetch(clean, exchange, *window(1000))
    assert result.returncode == 0, result.stderr
    assert "gaps: 2, 42 bars missing; the largest 37 bars between " in result.stdout
    assert f"between {iso(FIRST_MS + 299 * MIN)[:16]}Z and {iso(FIRST_MS + 337 * MIN)[:16]}Z" in result.stdout
    assert len(stored(db)) == 1000 - 42


def test_the_still_open_bar_is_left_out(clean, db, exchange):
    since = NOW_MS - 150 * MIN
    result = fetch(clean, exchange, "--timeframe", "1m", "--since", iso(since))
    finished = int(time.time() * 1000)
    assert result.returncode == 0, result.stderr
    served = {t for k in exchange.state.klines() for t in k.bars}
    kept = {ms(c) for c in stored(db)}
    assert kept <= served and all(t + MIN <= finished for t in kept)  # only closed bars
    open_bars = served - kept
    last = exchange.state.klines()[-1]
    # The bar open when the exchange answered is left out, unless it closed before the fetch looked.
    assert open_bars == {max(served)} or (not open_bars and max(served) + MIN <= finished)
    if open_bars:
        assert max(served) + MIN > last.wall_ms and "was left out" in result.stdout
    assert min(kept) == since and len(kept) == (max(kept) - since) // MIN + 1


def test_an_interrupted_fetch_keeps_whole_batches_and_resumes(clean, db, exchange):
    until = FIRST_MS + 1500 * MIN
    exchange.state.drop_from = 7  # 7 pages of 100 answered, then every connection drops
    args = ("--timeframe", "1m", "--since", iso(FIRST_MS), "--until", iso(until), "--batch-bars", "300")
    broken = fetch(clean, exchange, *args, budget_s=1)
    assert broken.returncode == 3
    assert "did not answer" in broken.stderr and "run it again to resume" in broken.stderr
    assert [ms(c) for c in stored(db)] == [FIRST_MS + i * MIN for i in range(600)]  # two whole batches of 300
    assert re.findall(r"(\d+) stored", broken.stderr) == ["300", "600"]  # a progress line per batch written

    exchange.state.drop_from = None
    requests_before = len(exchange.state.klines())
    resumed = fetch(clean, exchange, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "900 bars fetched in 9 requests, 900 new" in resumed.stdout and "resumed after" in resumed.stdout
    assert int(exchange.state.klines()[requests_before].query["startTime"]) == FIRST_MS + 600 * MIN
    assert [ms(c) for c in stored(db)] == [FIRST_MS + i * MIN for i in range(1500)]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--exchange", "binanse"), ["--exchange", "'binanse'", "did you mean binance"]),
        (("--symbol", "DOGE/XYZ"), ["--symbol", "'DOGE/XYZ'", "no spot market"]),
        (("--timeframe", "7m"), ["--timeframe", "'7m'"]),
        (("--timeframe", "3m"), ["--timeframe", "'3m'", "not one trad stores"]),
        (("--exchange", "coinbase", "--timeframe", "4h"), ["--timeframe", "coinbase does not offer timeframe '4h'"]),
        (("--since", "2099-01-01"), ["--since", "in the future"]),
        (("--since", "2024-02-01", "--until", "2024-01-01"), ["--until", "not before until"]),
        (("--since", "yesterday"), ["--since", "not a date"]),
        (("--since", None), ["--since", "no BTCUSDT 1m candles are stored yet"]),
        (("--as", "btc-usdt"), ["--as", "capital letters"]),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(clean, db, exchange, args, named):
    options = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1m", "--since": iso(FIRST_MS)}
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for k, v in options.items() if v is not None for x in (k, v)]
    env = process_env(clean) | {"EXCHANGE_BASE_URL": exchange.url}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "candles", "fetch", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout
    for word in named:
        assert word in result.stderr, result.stderr
    assert stored(db) == [] and exchange.state.klines() == []


def test_synthetic_candles_are_never_mixed_with_an_exchanges(clean, db, exchange):
    from app.db import transaction
    from app.services import candles as candles_service

    with transaction(clean.database_url) as session:
        candles_service.generate_synthetic(session, "BTCUSDT", "1m", 300, seed=1, start_ms=FIRST_MS - 300 * MIN)
    result = fetch(clean, exchange, *window(100))
    assert result.returncode == 2 and "--as" in result.stderr and "synthetic" in result.stderr
    assert {c.source for c in stored(db)} == {"synthetic"} and exchange.state.klines() == []
    kept = fetch(clean, exchange, *window(100), "--as", "BTCUSDTBIN")
    assert kept.returncode == 0, kept.stderr
    assert "-> BTCUSDTBIN (source binance)" in kept.stdout
    assert len(stored(db, "BTCUSDTBIN")) == 100


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_redrawn_on_a_terminal_and_a_line_per_batch_otherwise():
    start = FIRST_MS
    steps = [FetchProgress(start, start + 1000 * MIN, start + i * 100 * MIN, fetched=i * 100) for i in range(1, 11)]
    for i, p in enumerate(steps):
        p.stored = (i + 1) // 5 * 500  # a batch of 500 written at the 5th and the 10th page
    terminal, log = Terminal(), io.StringIO()
    for out in (terminal, log):
        writer = ProgressWriter(out)
        for p in steps:
            writer(p)
        writer.close()
    drawn = terminal.getvalue()
    assert drawn.count("\r") == 10 and drawn.endswith("\n") and "1000 bars fetched" in drawn
    assert "ETA" in drawn and " 50.0%" in drawn
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert "500 stored" in lines[0] and "100.0%  1000 bars fetched  1000 stored" in lines[1]
