"""The `trad` command: candle import (both layouts, idempotent, atomic), synthetic data, jobs,
smoke, and clear errors for bad input. Run as a real subprocess against the test databases."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.engine.backtest import Costs, backtest
from app.engine.candles import synthetic
from app.engine.ranges import for_strategy
from app.engine.strategies import get_strategy
from app.engine.validate import split_at
from app.models import Candle, ScheduleFire, TrainedConfiguration
from app.services import candles as candles_service
from app.status import JobStatus
from tests.support import ROOT, process_env, wait_until

FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}


def trad(settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def candle_count(db, symbol="BTCUSDT", timeframe="1m") -> int:
    db.expire_all()
    return db.scalar(
        select(func.count()).select_from(Candle).where(Candle.symbol == symbol, Candle.timeframe == timeframe)
    )


def write_generic_csv(path: Path, bars: int) -> Path:
    c = synthetic(bars, 9)
    rows = ["timestamp,open,high,low,close,volume"]
    rows += [
        f"{t},{o!r},{h!r},{lo!r},{cl!r},{v!r}"
        for t, o, h, lo, cl, v in zip(
            *(a.tolist() for a in (c.open_time, c.open, c.high, c.low, c.close, c.volume)), strict=True
        )
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_import_is_idempotent_and_a_bad_row_keeps_nothing(clean, db, tmp_path):
    good = write_generic_csv(tmp_path / "good.csv", 500)
    first = trad(clean, "candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", str(good))
    assert first.returncode == 0 and "500 new bars" in first.stdout, first.stderr
    again = trad(clean, "candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", str(good))
    assert again.returncode == 0 and "0 new bars" in again.stdout
    assert candle_count(db) == 500

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "1704067200000,1,2,0.5,1.5,10,1704067259999,1,1,1,1,0\n1704067260000,1,2,0.5,oops,10,1704067319999,1,1,1,1,0\n"
    )
    result = trad(clean, "candles", "import", "--symbol", "ETHUSDT", "--timeframe", "1m", str(bad))
    assert result.returncode == 2 and "line 2" in result.stderr and "nothing was imported" in result.stderr
    assert candle_count(db, "ETHUSDT") == 0


def test_kline_layout_imports(clean, db, tmp_path):
    kline = tmp_path / "BTCUSDT-1m.csv"
    kline.write_text(
        "1704067200000,100,101,99,100.5,10,1704067259999,1000,5,4,400,0\n"
        "1704067260000,100.5,102,100,101,12,1704067319999,1200,6,5,500,0\n"
    )
    result = trad(clean, "candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", str(kline))
    assert result.returncode == 0 and "2 new bars" in result.stdout
    listing = trad(clean, "candles", "list")
    assert "BTCUSDT\t1m\t2\t2024-01-01T00:00:00+00:00" in listing.stdout and "import" in listing.stdout


BACKTESTING_PY = importlib.util.find_spec("backtesting")


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe", "bars", "first"),
    [
        ("goog_layout.csv", "GOOG", "1d", 300, "2004-08-19T00:00:00+00:00"),
        ("eurusd_layout.csv", "EURUSD", "1h", 500, "2017-04-19T09:00:00+00:00"),
    ],
)
def test_files_in_pandas_layouts_import_unchanged(clean, db, name, symbol, timeframe, bars, first):
    path = ROOT / "tests" / "data" / name
    result = trad(clean, "candles", "import", "--symbol", symbol, "--timeframe", timeframe, str(path))
    assert result.returncode == 0 and f"{bars} new bars" in result.stdout, result.stderr
    assert candle_count(db, symbol, timeframe) == bars
    listing = trad(clean, "candles", "list")
    assert f"{symbol}\t{timeframe}\t{bars}\t{first}" in listing.stdout, listing.stdout


@pytest.mark.skipif(BACKTESTING_PY is None, reason="backtesting.py is not installed")
@pytest.mark.parametrize(("name", "timeframe", "bars"), [("GOOG.csv", "1d", 2148), ("EURUSD.csv", "1h", 5000)])
def test_backtesting_py_bundled_files_import_unchanged(clean, db, name, timeframe, bars):
    path = Path(BACKTESTING_PY.submodule_search_locations[0]) / "test" / name
    symbol = name.removesuffix(".csv")
    result = trad(clean, "candles", "import", "--symbol", symbol, "--timeframe", timeframe, str(path))
    assert result.returncode == 0 and f"{bars} new bars" in result.stdout, result.stderr
    assert candle_count(db, symbol, timeframe) == bars


def test_a_bad_line_in_a_pandas_layout_names_it_and_keeps_nothing(clean, db, tmp_path):
    lines = (ROOT / "tests" / "data" / "goog_layout.csv").read_text().splitlines()
    lines[200] = "08/19/2004" + lines[200][10:]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = trad(clean, "candles", "import", "--symbol", "GOOG", "--timeframe", "1d", str(bad))
    assert result.returncode == 2, result.stdout
    assert "line 201" in result.stderr and "ISO-8601" in result.stderr and "nothing was imported" in result.stderr
    assert candle_count(db, "GOOG", "1d") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["candles", "import", "--symbol", "btc", "--timeframe", "1m", "x.csv"], "symbol must be"),
        (["candles", "import", "--symbol", "BTCUSDT", "--timeframe", "7m", "x.csv"], "invalid choice"),
        (["candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", "/no/such.csv"], "no such file"),
        (["candles", "import", "--timeframe", "1m", "x.csv"], "--symbol"),
        (["candles", "synth", "--symbol", "BTCUSDT", "--bars", "0"], "between 1 and"),
        (["candles", "synth", "--symbol", "BTCUSDT", "--bars", "many"], "not an integer"),
        (["candles", "synth", "--symbol", "BTCUSDT", "--bars", "999999999"], "between 1 and"),
        (["jobs", "show", "not-a-uuid"], "not a job id"),
        (["jobs", "show", str(uuid.UUID(int=1))], "no job with id"),
        (["jobs", "cancel", str(uuid.UUID(int=1))], "no job with id"),
        (["jobs", "list", "--status", "bogus"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(clean, db, args, message):
    result = trad(clean, *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr
    assert candle_count(db) == 0


def test_binary_file_is_refused(clean, db, tmp_path):
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"\xff\xfe\x00garbage")
    result = trad(clean, "candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", str(blob))
    assert result.returncode == 2 and "nothing was imported" in result.stderr


def test_training_on_imported_candles_is_reproducible(clean, db, client, workers, tmp_path):
    csv_path = write_generic_csv(tmp_path / "year.csv", 6_000)
    assert trad(clean, "candles", "import", "--symbol", "BTCUSDT", "--timeframe", "1m", str(csv_path)).returncode == 0
    workers("w1")
    job_id = client.post(
        "/api/v2/training/start",
        json={
            "strategy": "bollinger_breakout",
            "symbol": "BTCUSDT",
            "timeframe": "15m",
            "n_iterations": 10,
            "seed": 4,
            "min_trades": 2,  # a tiny search on 400 bars: the default minimum would find nothing viable
        },
    ).json()["job_id"]
    final = wait_until(
        lambda: (p := client.get(f"/api/v2/training/jobs/{job_id}/progress").json())["status"] in FINISHED and p,
        timeout=120,
        what="job on imported candles",
    )
    assert final["status"] == JobStatus.SUCCEEDED, final["message"]
    config = db.scalars(select(TrainedConfiguration).where(TrainedConfiguration.job_id == job_id)).one()
    candles = candles_service.load(db, "BTCUSDT", "15m", None, None)  # resampled from the imported 1m bars
    strategy = get_strategy("bollinger_breakout")
    holdout = for_strategy(candles, split_at(len(candles), 0.2), len(candles), strategy)  # warmed on training bars
    again = backtest(holdout.bars, holdout.positions(strategy, config.params), Costs())
    assert again.metrics == config.validation_metrics
    shown = trad(clean, "jobs", "show", job_id)
    assert shown.returncode == 0 and '"status": "succeeded"' in shown.stdout
    listed = trad(clean, "jobs", "list", "--status", "succeeded")
    assert listed.returncode == 0 and job_id in listed.stdout, listed.stdout + listed.stderr


def test_smoke_command_waits_for_a_worker(clean, db, workers):
    workers("w1")
    result = trad(clean, "smoke", "--timeout", "30")
    assert result.returncode == 0 and JobStatus.SUCCEEDED in result.stdout, result.stdout + result.stderr
    assert trad(clean, "maintenance", "run-once").returncode == 0


def test_unreachable_database_is_a_clear_error(clean):
    down = clean.model_copy(update={"database_url": "postgresql+psycopg://trad@127.0.0.1:1/trad"})
    result = trad(down, "jobs", "list")
    assert result.returncode == 3 and "PostgreSQL is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_schedules_list_show_pause_resume(clean, db, client):
    created = client.post(
        "/api/v2/training/schedules",
        json={
            "name": "btc-nightly",
            "cron": "0 2 * * *",
            "template": {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h"},
        },
    ).json()
    listed = trad(clean, "schedules", "list")
    assert listed.returncode == 0 and created["id"] in listed.stdout and "btc-nightly" in listed.stdout
    paused = trad(clean, "schedules", "pause", "btc-nightly")
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert client.get(f"/api/v2/training/schedules/{created['id']}").json()["paused"] is True
    resumed = trad(clean, "schedules", "resume", created["id"])
    assert resumed.returncode == 0, resumed.stderr
    assert client.get(f"/api/v2/training/schedules/{created['id']}").json()["next_fire_at"] == created["next_fire_at"]
    shown = trad(clean, "schedules", "show", "btc-nightly")
    assert shown.returncode == 0 and '"cron": "0 2 * * *"' in shown.stdout and '"recent_fires": []' in shown.stdout
    missing = trad(clean, "schedules", "pause", "no-such-schedule")
    assert missing.returncode == 2 and "no schedule" in missing.stderr


def test_schedules_show_gives_a_refused_fires_reason_as_the_api_does(clean, db, client):
    created = client.post(
        "/api/v2/training/schedules",
        json={
            "name": "eth-hourly",
            "cron": "0 * * * *",
            "template": {"strategy": "sma_crossover", "symbol": "ETHUSDT", "timeframe": "1h"},
        },
    ).json()
    reason = "no candles stored for ETHUSDT 1h"
    db.add(
        ScheduleFire(
            schedule_id=uuid.UUID(created["id"]),
            fire_time=datetime.fromisoformat(created["next_fire_at"]),
            outcome="refused",
            message=reason,
        )
    )
    db.commit()
    [api_fire] = client.get(f"/api/v2/training/schedules/{created['id']}").json()["recent_fires"]
    shown = trad(clean, "schedules", "show", "eth-hourly")
    assert shown.returncode == 0, shown.stderr
    [cli_fire] = json.loads(shown.stdout)["recent_fires"]
    assert cli_fire == api_fire and cli_fire["message"] == reason
