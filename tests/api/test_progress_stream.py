"""Following progress against the real API process (uvicorn on a loopback port) with async
clients: hundreds of followers cost no thread and no database connection, Server-Sent Events
resume with Last-Event-ID, and the stream bounds answer 429."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from sqlalchemy import func, text, update

from app.models import Job
from tests.support import TOKEN

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = pytest.mark.usefixtures("candles_1h")  # candles so a 1h job is accepted
BODY = {"strategy": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h", "n_iterations": 10}
DEADLINE_S = 120  # generous: a functional bound, not a speed figure


def start_job(url: str, seed: int = 1) -> str:
    resp = httpx.post(f"{url}/api/v2/training/start", json={**BODY, "seed": seed}, headers=HEADERS, timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def progress_path(job_id: str) -> str:
    return f"/api/v2/training/jobs/{job_id}/progress"


def write_progress(db, job_id: str, percent: float, message: str) -> None:
    """A progress write to the job row, as a worker's would be, committed."""
    db.execute(update(Job).where(Job.id == job_id).values(percent=percent, message=message, updated_at=func.now()))
    db.commit()


def connections_idle_in_transaction(db) -> int:
    n = db.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
        )
    )
    db.rollback()
    return n


def client_connections(db) -> int:
    n = db.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend'"
        )
    )
    db.rollback()
    return n


async def next_sse(lines) -> dict | str:
    """The next SSE block: {"id": ..., "data": ...} for an event, "keep-alive" for a comment."""
    block: list[str] = []
    async for line in lines:
        if line:
            block.append(line)
        elif block:
            break
    if not block:
        raise AssertionError("the stream ended")
    if all(part.startswith(":") for part in block):
        return "keep-alive"
    fields = dict(part.split(": ", 1) for part in block)
    return {"id": int(fields["id"]), "data": json.loads(fields["data"])}


def test_200_followers_hold_no_thread_nor_connection_and_all_see_the_end(api_server, db):
    url = api_server()
    job_id = start_job(url)
    n = 200

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, limits=limits) as followers,
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S) as other,
            contextlib.AsyncExitStack() as stack,
        ):
            streams = []
            for _ in range(n):
                resp = await stack.enter_async_context(
                    followers.stream("GET", progress_path(job_id), params={"follow": "true"})
                )
                assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
                lines = resp.aiter_lines()
                assert json.loads(await anext(lines))["status"] == "queued"
                streams.append(lines)

            # With every stream open, the rest of the API still answers.
            assert (await other.get("/healthz")).json() == {"status": "ok"}
            plain = await other.get(progress_path(job_id))
            assert plain.status_code == 200 and plain.json()["status"] == "queued"
            page = await other.get("/api/v2/training/jobs")
            assert page.status_code == 200 and page.json()["total"] == 1
            # ... and the streams hold no database connection, let alone one idle in a transaction.
            assert connections_idle_in_transaction(db) == 0
            assert client_connections(db) < 30

            # One change reaches every follower, and every stream ends with the job.
            assert (await other.delete(f"/api/v2/training/jobs/{job_id}")).json()["status"] == "canceled"

            async def last_line(lines) -> dict:
                last = None
                async for line in lines:
                    if line:
                        last = json.loads(line)
                return last

            ends = await asyncio.wait_for(asyncio.gather(*(last_line(s) for s in streams)), DEADLINE_S)
            assert [end["status"] for end in ends] == ["canceled"] * n

    asyncio.run(scenario())


def test_sse_follows_changes_and_resumes_from_last_event_id(api_server, db):
    # Re-reads on a timer are pushed out of the test's reach: only NOTIFY can deliver changes.
    url = api_server(FOLLOW_KEEPALIVE_S="1", FOLLOW_RESYNC_S="3600")
    job_id = start_job(url)
    sse = {**HEADERS, "Accept": "text/event-stream"}

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=url, headers=sse, timeout=DEADLINE_S) as client:
            async with client.stream("GET", progress_path(job_id)) as resp:
                assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                first = await next_sse(lines)
                assert first["data"]["status"] == "queued" and first["data"]["job_id"] == job_id
                write_progress(db, job_id, 10.0, "step 1")
                event = await next_sse(lines)
                while event == "keep-alive":
                    event = await next_sse(lines)
                assert event["data"]["percent"] == 10.0 and event["data"]["message"] == "step 1"
                assert event["id"] != first["id"]
                seen = event["id"]

            # Resuming with the id of the newest state: no repeat, only keep-alives until a change.
            async with client.stream("GET", progress_path(job_id), headers={"Last-Event-ID": str(seen)}) as resp:
                lines = resp.aiter_lines()
                assert await next_sse(lines) == "keep-alive"
                write_progress(db, job_id, 20.0, "step 2")
                event = await next_sse(lines)
                while event == "keep-alive":
                    event = await next_sse(lines)
                assert event["data"]["percent"] == 20.0

            # A change made while disconnected is the first thing a resumed stream sends.
            write_progress(db, job_id, 30.0, "step 3")
            async with client.stream("GET", progress_path(job_id), headers={"Last-Event-ID": str(seen)}) as resp:
                lines = resp.aiter_lines()
                event = await next_sse(lines)
                assert event != "keep-alive" and event["data"]["percent"] == 30.0 and event["id"] != seen
                cancel = await client.delete(f"/api/v2/training/jobs/{job_id}", headers=HEADERS)
                assert cancel.status_code == 202
                event = await next_sse(lines)
                while event == "keep-alive" or event["data"]["status"] != "canceled":
                    event = await next_sse(lines)
                final = event["id"]
                assert [line async for line in lines if line and not line.startswith(":")] == []  # the stream ended

            # The job has ended and the client has its last event: 204 tells EventSource to stop.
            done = await client.get(progress_path(job_id), headers={"Last-Event-ID": str(final)})
            assert done.status_code == 204
            # Without the id it gets the final state once, then the stream ends.
            async with client.stream("GET", progress_path(job_id)) as resp:
                lines = resp.aiter_lines()
                assert (await next_sse(lines))["data"]["status"] == "canceled"
                assert [line async for line in lines if line] == []

            bad = await client.get(progress_path(job_id), headers={"Last-Event-ID": "not-a-number"})
            assert bad.status_code == 422 and "last-event-id" in bad.text.lower()

    asyncio.run(scenario())


def test_streams_are_bounded_per_client_and_in_total_with_a_429(api_server, db):
    url = api_server(FOLLOW_MAX_STREAMS="5", FOLLOW_MAX_STREAMS_PER_CLIENT="3")
    job_id = start_job(url)

    async def scenario() -> None:
        a_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
        b_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with (
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, transport=a_transport) as a,
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, transport=b_transport) as b,
            contextlib.AsyncExitStack() as stack,
        ):
            held = []  # a dropped line iterator closes its response: keep them

            async def open_stream(client: httpx.AsyncClient) -> httpx.Response:
                resp = await stack.enter_async_context(
                    client.stream("GET", progress_path(job_id), params={"follow": "true"})
                )
                if resp.status_code == 200:
                    held.append(resp.aiter_lines())
                    await anext(held[-1])
                else:
                    await resp.aread()
                return resp

            for _ in range(3):
                assert (await open_stream(a)).status_code == 200
            refused = await open_stream(a)
            assert refused.status_code == 429 and "FOLLOW_MAX_STREAMS_PER_CLIENT" in refused.json()["detail"]
            assert refused.headers["retry-after"]
            for _ in range(2):
                assert (await open_stream(b)).status_code == 200
            refused = await open_stream(b)
            assert refused.status_code == 429 and "FOLLOW_MAX_STREAMS" in refused.json()["detail"]
            # A plain read is not a stream: still answered.
            assert (await b.get(progress_path(job_id))).status_code == 200

        # Every stream closed: the slots are given back.
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S) as c:
            for _ in range(int(DEADLINE_S / 0.1)):
                async with c.stream("GET", progress_path(job_id), params={"follow": "true"}) as resp:
                    if resp.status_code == 200:
                        break
                await asyncio.sleep(0.1)
            assert resp.status_code == 200

    asyncio.run(scenario())


def test_clients_behind_the_loopback_proxy_are_counted_apart_and_a_direct_client_cannot_pose_as_one(api_server, db):
    """nginx on loopback names the client in X-Forwarded-For: behind it, two clients are two
    addresses, each with its own FOLLOW_MAX_STREAMS_PER_CLIENT. A client that is not the proxy
    (127.0.0.2: not a trusted proxy address) is counted by its own address whatever it sends."""
    url = api_server(FOLLOW_MAX_STREAMS_PER_CLIENT="1")
    job_id = start_job(url)

    async def scenario() -> dict[str, int]:
        proxy = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
        direct = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with (
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, transport=proxy) as via_proxy,
            httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=DEADLINE_S, transport=direct) as direct_client,
            contextlib.AsyncExitStack() as stack,
        ):
            held = []

            async def open_stream(client: httpx.AsyncClient, forwarded_for: str) -> int:
                resp = await stack.enter_async_context(
                    client.stream(
                        "GET",
                        progress_path(job_id),
                        params={"follow": "true"},
                        headers={"X-Forwarded-For": forwarded_for},
                    )
                )
                if resp.status_code == 200:
                    held.append(resp.aiter_lines())
                    await anext(held[-1])
                else:
                    await resp.aread()
                return resp.status_code

            return {
                "proxy, client 203.0.113.1": await open_stream(via_proxy, "203.0.113.1"),
                "proxy, client 203.0.113.2": await open_stream(via_proxy, "203.0.113.2"),
                "proxy, client 203.0.113.1 again": await open_stream(via_proxy, "203.0.113.1"),
                # Two hops: the proxy's own client is the last address it appended.
                "proxy, client 203.0.113.3 via 198.51.100.9": await open_stream(via_proxy, "198.51.100.9, 203.0.113.3"),
                "direct 127.0.0.2 claiming 203.0.113.4": await open_stream(direct_client, "203.0.113.4"),
                "direct 127.0.0.2 claiming 203.0.113.5": await open_stream(direct_client, "203.0.113.5"),
            }

    statuses = asyncio.run(scenario())
    print(f"\n{statuses}")
    assert statuses == {
        "proxy, client 203.0.113.1": 200,
        "proxy, client 203.0.113.2": 200,
        "proxy, client 203.0.113.1 again": 429,
        "proxy, client 203.0.113.3 via 198.51.100.9": 200,
        "direct 127.0.0.2 claiming 203.0.113.4": 200,
        "direct 127.0.0.2 claiming 203.0.113.5": 429,
    }
