"""`make dev`'s file (var/dev.env in the checkout) gives `trad` the dev stack's URLs when nothing
is exported and no env file is in use; the environment and a deployed server's env file win."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app import settings as settings_module
from app.settings import get_settings

DEV_URL = "postgresql+psycopg://trad@127.0.0.1:55432/trad"
DEFAULT_URL = "postgresql+psycopg://trad@127.0.0.1:5432/trad"


@pytest.fixture
def dev_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "var" / "dev.env"
    path.parent.mkdir()
    path.write_text(f"DATABASE_URL={DEV_URL}\nREDIS_URL=redis://127.0.0.1:56379/0\nAPI_TOKEN=dev-token\n")
    monkeypatch.setattr(settings_module, "DEV_ENV_FILE", path)
    for name in ("DATABASE_URL", "REDIS_URL", "API_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAD_ENV_FILE", str(tmp_path / "no-such.env"))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_without_an_env_file_the_dev_stacks_file_is_read(dev_file):
    s = get_settings()
    assert s.database_url == DEV_URL
    assert s.redis_url == "redis://127.0.0.1:56379/0"
    assert s.api_token_value == "dev-token"


def test_the_environment_wins_over_the_dev_stacks_file(dev_file, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://trad@db.example:5432/trad")
    s = get_settings()
    assert s.database_url == "postgresql+psycopg://trad@db.example:5432/trad"
    assert s.redis_url == "redis://127.0.0.1:56379/0"


def test_a_servers_env_file_means_the_dev_file_is_never_read(dev_file, tmp_path, monkeypatch):
    server_env = tmp_path / "trad.env"
    server_env.write_text("REDIS_URL=redis://10.0.0.5:6379/0\n")
    monkeypatch.setenv("TRAD_ENV_FILE", str(server_env))
    s = get_settings()
    assert s.redis_url == "redis://10.0.0.5:6379/0"
    assert s.database_url == DEFAULT_URL, "a setting the server's file leaves out must not come from dev.env"
    assert s.api_token_value == ""


def test_without_the_dev_file_the_defaults_hold(dev_file):
    dev_file.unlink()
    assert get_settings().database_url == DEFAULT_URL
