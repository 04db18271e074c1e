"""Held database connections: progress streams must not pin a connection (idle in a
transaction, holding table locks) for their life, and a migration must not queue forever
behind a lock someone else holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

import httpx
import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from app.migrate import downgrade, upgrade
from tests.api.test_progress_stream import (
    DEADLINE_S,
    HEADERS,
    connections_idle_in_transaction,
    progress_path,
    start_job,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("candles_1h")]  # candles so a 1h job is accepted


def test_follow_streams_pin_no_connection_and_leave_the_pool_to_others(api_server, db):
    # More streams than the pool has connections (pool + overflow): each used to hold one.
    url = api_server(DB_POOL_SIZE="3", DB_MAX_OVERFLOW="2")
    job_id = start_job(url)
    n = 12

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, limits=limits) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            held = []
            for _ in range(n):
                resp = await stack.enter_async_context(
                    client.stream("GET", progress_path(job_id), params={"follow": "true"})
                )
                assert resp.status_code == 200
                held.append(resp.aiter_lines())
                assert json.loads(await anext(held[-1]))["status"] == "queued"
            assert connections_idle_in_transaction(db) == 0
            for _ in range(3 * n):  # more plain reads than the pool could serve if streams held it
                resp = await client.get(progress_path(job_id))
                assert resp.status_code == 200 and resp.json()["status"] == "queued"
            assert (await client.get("/api/v2/training/jobs")).status_code == 200
            # A request may hold its transaction an instant after its answer; the streams, never.
            wait_until(lambda: connections_idle_in_transaction(db) == 0, what="no connection idle in a transaction")

    asyncio.run(scenario())


def test_a_migration_gives_up_on_a_held_lock_instead_of_queueing_behind_it(postgres):
    admin = dict(host="127.0.0.1", port=postgres.port, user="trad", autocommit=True)
    with psycopg.connect(**admin, dbname="postgres") as c:
        c.execute("DROP DATABASE IF EXISTS lock_timeout_check")
        c.execute("CREATE DATABASE lock_timeout_check")
    url = postgres.url.rsplit("/", 1)[0] + "/lock_timeout_check"
    upgrade(url)
    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            downgrade(url, "0001", lock_timeout_s=0.5)  # drops a trigger: needs an exclusive lock
            outcome.append(None)
        except OperationalError as exc:
            outcome.append(exc)

    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="trad", dbname="lock_timeout_check") as holder:
        holder.execute("SELECT count(*) FROM training_jobs").fetchone()  # a reader idle in its transaction
        thread = threading.Thread(target=migrate, daemon=True)
        thread.start()
        thread.join(DEADLINE_S)
        alive = thread.is_alive()
        holder.rollback()
    thread.join(DEADLINE_S)
    assert not alive, "the migration was still waiting for the lock"
    assert outcome and isinstance(outcome[0], OperationalError) and "lock timeout" in str(outcome[0])
    downgrade(url, "0001")  # nothing holds the lock now: the same migration goes through
