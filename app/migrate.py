"""Run Alembic from code: used by the CLI, the local stack and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str, lock_timeout_s: float | None = None) -> Config:
    """`lock_timeout_s` bounds how long a migration waits for a table lock (default: the
    `MIGRATION_LOCK_TIMEOUT_S` setting): a long transaction elsewhere fails the migration
    instead of queueing every claim and write behind it."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    if lock_timeout_s is not None:
        config.attributes["lock_timeout_s"] = lock_timeout_s
    return config


def upgrade(database_url: str, revision: str = "head", *, lock_timeout_s: float | None = None) -> None:
    command.upgrade(alembic_config(database_url, lock_timeout_s), revision)


def downgrade(database_url: str, revision: str = "base", *, lock_timeout_s: float | None = None) -> None:
    command.downgrade(alembic_config(database_url, lock_timeout_s), revision)


def check(database_url: str) -> None:
    """Raise if the models and the migrated schema differ."""
    command.check(alembic_config(database_url))
