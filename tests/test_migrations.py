"""The schema is built by migrations: upgrade, downgrade, upgrade, then no drift from the models."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, inspect

from app.db import sync_url
from app.migrate import check, downgrade, upgrade


def test_upgrade_downgrade_upgrade_and_no_drift(postgres):
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="trad", dbname="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS migrations_check")
        c.execute("CREATE DATABASE migrations_check")
    url = postgres.url.rsplit("/", 1)[0] + "/migrations_check"
    upgrade(url)
    engine = create_engine(sync_url(url))
    tables = set(inspect(engine).get_table_names())
    assert {
        "training_jobs",
        "training_attempts",
        "training_progress",
        "training_trials",
        "trained_configurations",
        "candles",
    } <= tables
    downgrade(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    check(url)  # raises if the models and the migrated schema differ
    engine.dispose()
