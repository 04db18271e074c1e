"""End to end: strategies as installed packages. Throwaway virtualenvs (the suite's packages
reached through a `.pth` line, nothing downloaded) get the example package and a package of
misbehaving strategies installed; the API and workers run from them against the suite's
PostgreSQL and Redis. The example trains over HTTP and its configuration names its package
and version; a worker without the strategy, or with another version of it, fails the job
clearly and does not retry it; a strategy that raises or returns bad positions fails its job
with a named error; one that fails to import is reported by name and takes nothing down."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.models import TrainedConfiguration
from app.status import JobStatus
from tests.support import ROOT, TOKEN, api_process, load_demo, process_env, start_body, start_worker, wait_until

EXAMPLE = ROOT / "examples" / "ema_volatility"
BAD_PACKAGE = """
import numpy as np
from app.engine.strategy import IntParam, vectorised

SPACE = (IntParam("n", 1, 5, default=2),)


def _make(name, body):
    return vectorised(name=name, space=SPACE, warmup=lambda p: 1)(body)


def _raise(c, p):
    raise RuntimeError("boom at bar 7")


strategy_raises = _make("strategy_raises", _raise)
wrong_length = _make("wrong_length", lambda c, p: np.zeros(len(c) - 1))
out_of_range = _make("out_of_range", lambda c, p: np.full(len(c), 2))
nan_positions = _make("nan_positions", lambda c, p: np.full(len(c), np.nan))
"""
BAD_ENTRY_POINTS = {
    "strategy_raises": "bad_strategies:strategy_raises",
    "wrong_length": "bad_strategies:wrong_length",
    "out_of_range": "bad_strategies:out_of_range",
    "nan_positions": "bad_strategies:nan_positions",
    "broken_import": "bad_strategies:no_such_object",
}


def _venv(path: Path, *packages: Path) -> str:
    """A virtualenv without system site-packages that sees the suite's packages (trad's editable
    install among them) through a `.pth` line, with `packages` installed into it, offline."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = str(path / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_path("purelib")
    Path(site, "_trad_suite.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    for package in packages:
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation", str(package)],
            check=True,
            capture_output=True,
        )
    return python


def _package_copy(source: Path, into: Path, version: str | None = None) -> Path:
    target = into / f"{source.name}-{version or 'as-is'}"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    if version:
        toml = target / "pyproject.toml"
        toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    return target


def _bad_package(into: Path) -> Path:
    root = into / "bad_strategies"
    (root / "src" / "bad_strategies").mkdir(parents=True)
    (root / "src" / "bad_strategies" / "__init__.py").write_text(BAD_PACKAGE)
    entries = "\n".join(f'{k} = "{v}"' for k, v in BAD_ENTRY_POINTS.items())
    (root / "pyproject.toml").write_text(
        '[project]\nname = "bad-strategies"\nversion = "0.0.1"\n\n'
        f'[project.entry-points."trad.strategies"]\n{entries}\n\n'
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    return root


@pytest.fixture(scope="module")
def venvs(tmp_path_factory) -> dict[str, str]:
    """`plugins`: the example and the misbehaving package; `bare`: neither; `newer`: the
    example at 1.1.0."""
    base = tmp_path_factory.mktemp("strategy-venvs")
    return {
        "plugins": _venv(base / "plugins", _package_copy(EXAMPLE, base), _bad_package(base)),
        "bare": _venv(base / "bare"),
        "newer": _venv(base / "newer", _package_copy(EXAMPLE, base, "1.1.0")),
    }


def _finish(http: httpx.Client, job_id: str) -> dict:
    def finished():
        body = http.get(f"/api/v2/training/jobs/{job_id}/progress").json()
        return body if body["status"] in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED) else None

    return wait_until(finished, timeout=120, interval=0.2, what=f"job {job_id} to finish")


def _start(http: httpx.Client, **body) -> str:
    resp = http.post("/api/v2/training/start", json=start_body(**body))
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def test_a_package_strategy_trains_over_http_and_workers_must_have_its_version(venvs, clean, db, tmp_path):
    load_demo(db)
    env = process_env(clean)
    api_log = tmp_path / "api.log"
    with api_process(clean, log=api_log, python=venvs["plugins"]) as url:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

        # The catalogue: the package's strategy with its version; the broken one named, the API up.
        listing = http.get("/api/v2/training/strategies").json()
        by_name = {s["name"]: s for s in listing["strategies"]}
        ema = by_name["ema_volatility"]
        assert (ema["package"], ema["version"]) == ("trad-ema-volatility", "1.0.0")
        assert ema["defaults"] == {"fast": 8, "slow": 30, "vol_window": 50, "vol_max": 0.01, "mode": "long_short"}
        assert ema["warmup"] == 120 and ema["max_warmup"] == 400
        kinds = {p["name"]: (p["kind"], p["log"], p["choices"]) for p in ema["params"]}
        assert kinds["vol_max"] == ("float", True, None)
        assert kinds["mode"] == ("categorical", False, ["long_short", "long_only"])
        assert by_name["sma_crossover"]["package"] == "trad"  # the built-ins, the same way
        assert [b["name"] for b in listing["broken"]] == ["broken_import"]
        assert "no_such_object" in listing["broken"][0]["reason"]
        assert http.get("/healthz").status_code == 200
        enum = http.get("/openapi.json").json()["components"]["schemas"]["StrategyName"]["enum"]
        assert "ema_volatility" in enum and "broken_import" not in enum

        # A worker that lacks the strategy fails the job, clearly, once.
        lacking = start_worker(env, "lacking", tmp_path, python=venvs["bare"])
        job = _start(http, strategy="ema_volatility")
        final = _finish(http, job)
        assert final["status"] == JobStatus.FAILED and final["attempts"] == 1, final
        assert final["error"]["type"] == "StrategyUnavailable"
        assert "worker lacking does not have ema_volatility 1.0.0" in final["error"]["message"]
        lacking.kill_all()

        # A worker with another version of it: the same.
        newer = start_worker(env, "newer", tmp_path, python=venvs["newer"])
        final = _finish(http, _start(http, strategy="ema_volatility"))
        assert final["status"] == JobStatus.FAILED and final["attempts"] == 1, final
        assert final["error"]["type"] == "StrategyUnavailable"
        assert "worker newer has ema_volatility 1.1.0" in final["error"]["message"]
        assert "the job asks for 1.0.0" in final["error"]["message"]
        newer.kill_all()
        assert db.scalar(select(func.count()).select_from(TrainedConfiguration)) == 0

        # A worker with the package trains it, keeping to the narrowed parameters.
        worker = start_worker(env, "w1", tmp_path, python=venvs["plugins"])
        narrowed = {"mode": "long_only", "slow": {"low": 20, "high": 60}, "vol_max": {"low": 0.004, "high": 0.05}}
        job = _start(http, strategy="ema_volatility", params=narrowed, n_iterations=10)
        final = _finish(http, job)
        assert final["status"] == JobStatus.SUCCEEDED, final
        config = http.get(f"/api/v2/training/configurations/{final['configuration_id']}").json()
        assert config["strategy"] == "ema_volatility"
        assert (config["strategy_package"], config["strategy_version"]) == ("trad-ema-volatility", "1.0.0")
        assert config["params"]["mode"] == "long_only" and 20 <= config["params"]["slow"] <= 60
        assert config["params"]["fast"] < config["params"]["slow"]
        trials = http.get(f"/api/v2/training/jobs/{job}/trials", params={"limit": 100}).json()["items"]
        assert len(trials) == 10
        assert all(t["params"]["mode"] == "long_only" and 0.004 <= t["params"]["vol_max"] <= 0.05 for t in trials)
        best = http.get(
            "/api/v2/training/configurations/best", params={"symbol": "BTCUSDT", "strategy": "ema_volatility"}
        )
        assert best.json()["id"] == config["id"]
        detail = http.get(f"/api/v2/training/jobs/{job}").json()
        assert detail["params"]["strategy_version"] == "1.0.0"
        assert detail["params"]["strategy_package"] == "trad-ema-volatility"

        # Strategies that misbehave: a failed job with a named error each, nothing saved, no retry.
        expected = {
            "strategy_raises": ("StrategyError", "RuntimeError: boom at bar 7"),
            "wrong_length": ("InvalidPositions", "shape"),
            "out_of_range": ("InvalidPositions", "positions must be -1, 0 or 1"),
            "nan_positions": ("InvalidPositions", "NaN"),
        }
        jobs = {name: _start(http, strategy=name, n_iterations=2) for name in expected}
        for name, (error_type, words) in expected.items():
            final = _finish(http, jobs[name])
            assert final["status"] == JobStatus.FAILED and final["attempts"] == 1, final
            assert final["error"]["type"] == error_type, final["error"]
            assert name in final["error"]["message"] and words in final["error"]["message"], final["error"]
        assert db.scalar(select(func.count()).select_from(TrainedConfiguration)) == 1
        http.close()
    for log in (api_log, worker.log_path):
        errors = [line for line in log.read_text().splitlines() if '"ERROR"' in line and "broken_import" in line]
        assert len(errors) == 1, (log, errors)
    worker.kill_all()
