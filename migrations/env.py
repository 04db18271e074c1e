"""Alembic environment: the database URL comes from Settings unless the caller passes one."""

from alembic import context
from sqlalchemy import text

from app.db import get_engine, sync_url
from app.models import Base
from app.settings import get_settings

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def lock_timeout_ms() -> int:
    seconds = config.attributes.get("lock_timeout_s") or get_settings().migration_lock_timeout_s
    return max(1, int(seconds * 1000))


def run_migrations_offline() -> None:
    context.configure(url=sync_url(database_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = get_engine(database_url())
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # For this transaction only: a lock held elsewhere fails the migration after the timeout.
        connection.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{lock_timeout_ms()}ms"})
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
