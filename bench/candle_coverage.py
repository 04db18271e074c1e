"""Benchmark the candle-coverage check that `POST /training/start` makes before accepting a
training job, on a year of 1-minute bars in a throwaway PostgreSQL started here.

    .venv/bin/python bench/candle_coverage.py [--bars 525600] [--repeat 20]

Prints the mean time of one check per timeframe (stored 1m bars; 1h and 1d resampled from them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import transaction  # noqa: E402
from app.services import candles as candles_service  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with throwaway_servers("coverage", redis=False) as (_, pg, _):
        with transaction(pg.url) as session:
            candles_service.generate_synthetic(session, "BTCUSDT", "1m", args.bars, seed=1)
        print(f"{args.bars} 1m bars of BTCUSDT stored")
        for timeframe in ("1m", "1h", "1d"):
            params = {"symbol": "BTCUSDT", "timeframe": timeframe}
            with transaction(pg.url) as session:
                candles_service.coverage_problem(session, params)  # warm the cache
                started = time.perf_counter()
                for _ in range(args.repeat):
                    problem = candles_service.coverage_problem(session, params)
                took = (time.perf_counter() - started) / args.repeat
            print(f"{timeframe}: {took * 1000:.1f} ms per check ({problem or 'enough bars'})")


if __name__ == "__main__":
    main()
