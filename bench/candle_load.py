"""Peak memory of loading candles for one job, with a throwaway PostgreSQL started here.

    .venv/bin/python bench/candle_load.py [--bars 525600]

Stores `--bars` synthetic 1-minute bars (525,600 = one year), then loads them as a job does
(`app.services.candles.load`) in a fresh process and prints that process's peak RSS above its
resident size just before the load (imports done, connection open; VmHWM reset through
/proc/self/clear_refs), the load time, and the bytes the arrays themselves hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import transaction  # noqa: E402
from app.services import candles as candles_service  # noqa: E402
from bench.servers import throwaway_servers  # noqa: E402

PROBE = """
import json, sys, time
from app.db import transaction
from app.services import candles
with transaction(sys.argv[1]) as s:
    s.connection()
def status(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
began = time.perf_counter()
with transaction(sys.argv[1]) as s:
    c = candles.load(s, "BTCUSDT", "1m", None, None)
took = time.perf_counter() - began
peak = status("VmHWM")
arrays = sum(getattr(c, f).nbytes for f in ("open_time", "open", "high", "low", "close", "volume"))
print(json.dumps({"bars": len(c), "base_kb": base, "peak_kb": peak, "seconds": took, "array_bytes": arrays}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=525_600)
    args = parser.parse_args()
    with throwaway_servers("candle-load", redis=False) as (_, pg, _):
        with transaction(pg.url) as session:
            candles_service.generate_synthetic(session, "BTCUSDT", "1m", args.bars, seed=1)
        out = subprocess.run(
            [sys.executable, "-c", PROBE, pg.url], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"load of {r['bars']:,} 1m bars: peak RSS +{(r['peak_kb'] - r['base_kb']) / 1024:.0f} MiB "
            f"(arrays {r['array_bytes'] / 2**20:.0f} MiB), {r['seconds']:.2f}s"
        )


if __name__ == "__main__":
    main()
