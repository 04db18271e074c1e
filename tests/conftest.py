"""Fixtures: a throwaway PostgreSQL and Redis for the whole run, a schema built by Alembic,
clean tables per test, the real app, and real forking worker processes."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.api.app import create_app
from app.db import session_factory
from app.dev.servers import PostgresServer, RedisServer
from app.migrate import upgrade
from app.settings import Settings
from tests.browser import Browser
from tests.support import (
    TEST_TIMINGS,
    TOKEN,
    WorkerProcess,
    add_candles_1h,
    api_process,
    process_env,
    reset,
    start_worker,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection tests with real processes and signals")
    config.addinivalue_line("markers", "soak: long randomised fault-injection soak")


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="trad-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(base_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(base_dir / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(base_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(base_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def migrated(postgres: PostgresServer) -> str:
    upgrade(postgres.url)
    return postgres.url


@pytest.fixture(scope="session")
def settings(migrated: str, redis_server: RedisServer) -> Settings:
    # In-process API clients do not host the maintenance loop, so tests drive it themselves.
    return Settings(
        database_url=migrated, redis_url=redis_server.url, api_token=TOKEN, maintenance_in_api=False, **TEST_TIMINGS
    )


@pytest.fixture
def clean(settings: Settings) -> Iterator[Settings]:
    """Every test starts with empty tables and an empty Redis."""
    reset(settings)
    yield settings


@pytest.fixture
def db(clean: Settings):
    with session_factory(clean.database_url)() as session:
        yield session


@pytest.fixture
def candles_1h(db) -> None:
    """300 synthetic hourly BTCUSDT bars: enough for a 1h training job to be accepted."""
    add_candles_1h(db)


@pytest.fixture
def redis(clean: Settings) -> Redis:
    return Redis.from_url(clean.redis_url)


@pytest.fixture
def client(clean: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(clean), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


@pytest.fixture
def anon_client(clean: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(clean)) as c:
        yield c


@pytest.fixture
def api_url(clean: Settings) -> Iterator[str]:
    with api_process(clean) as url:
        yield url


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the `api_url` process, with the token."""
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """One headless Chromium (tests/browser.py), closed at teardown."""
    b = Browser(tmp_path / "chromium")
    yield b
    b.close()


@pytest.fixture
def workers(clean: Settings, tmp_path: Path) -> Iterator:
    """Start real worker processes: `workers("w1")`. All are killed at teardown."""
    started: list[WorkerProcess] = []

    def _start(name: str = "w1", *extra: str, env_overrides: dict[str, str] | None = None) -> WorkerProcess:
        env = process_env(clean)
        env.update(env_overrides or {})
        worker = start_worker(env, name, tmp_path, *extra)
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.kill_all()


@pytest.fixture
def api_server(clean: Settings, tmp_path: Path) -> Iterator:
    """Start the real API on a free loopback port: `url = api_server(FOLLOW_KEEPALIVE_S="1")`.
    Each one logs to tmp_path/api-N.log and is stopped at teardown."""
    with contextlib.ExitStack() as stack:
        count = itertools.count(1)

        def _start(**env_overrides: str) -> str:
            return stack.enter_context(api_process(clean, tmp_path / f"api-{next(count)}.log", **env_overrides))

        yield _start
