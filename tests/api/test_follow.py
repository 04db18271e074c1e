"""The stream hub wakes a job's followers lane by lane (app/api/follow.py): every follower gets
every change it is owed exactly once and in order, including when a second change arrives while
the lanes are still being woken for the first, and a lane woken again for a change it already
sent writes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from app.api.follow import LANES, FollowHub
from app.api.schemas import Progress
from app.status import JobStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FOLLOWERS = 3 * LANES + 5


def view(job_id: uuid.UUID, iteration: int, status: JobStatus = JobStatus.RUNNING) -> Progress:
    return Progress(
        job_id=job_id,
        kind="training",
        status=status,
        phase="optimisation",
        percent=float(iteration),
        message=None,
        iteration=iteration,
        n_iterations=10,
        best_score=None,
        eta_seconds=None,
        attempts=1,
        counted_attempts=0,
        max_attempts=3,
        resumed_from_iteration=None,
        cancel_requested=False,
        not_before=None,
        created_at=T0,
        started_at=T0,
        updated_at=T0 + timedelta(seconds=iteration),
        finished_at=None,
        error=None,
        configuration_id=None,
    )


async def until(predicate, what: str, timeout: float = 20.0) -> None:
    """Poll on the event loop (other tasks run between polls) until `predicate` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0)  # one turn of the loop: the test acts between two lanes


def test_each_follower_gets_each_change_once_in_order(clean):
    job_id = uuid.uuid4()
    current = [view(job_id, 0)]
    hub = FollowHub(clean, lambda _: current[0])
    got: list[list[int]] = [[] for _ in range(FOLLOWERS)]

    async def follower(i: int) -> None:
        async for line in hub.follow(job_id, view(job_id, 0), sse=False):
            got[i].append(json.loads(line)["iteration"])

    async def main() -> None:
        tasks = [asyncio.create_task(follower(i)) for i in range(FOLLOWERS)]
        try:
            await until(lambda: all(g == [0] for g in got), "every follower's first line")
            topic = hub._topics[job_id]

            def change(v: Progress) -> None:  # as a write and its notification would: the row first
                current[0] = v
                topic.publish(v)

            change(view(job_id, 1))
            await until(lambda: any(g[-1] == 1 for g in got), "the first lane to see change 1")
            change(view(job_id, 2))  # while the other lanes are still to be woken for 1
            await until(lambda: all(g[-1] == 2 for g in got), "every follower to see change 2")
            await asyncio.sleep(0.2)  # the waker's second round, which owes nothing new to most lanes
            change(view(job_id, 3, JobStatus.SUCCEEDED))
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        finally:
            for task in tasks:
                task.cancel()
            await hub.close()

    asyncio.run(main())
    saw_one = [g for g in got if 1 in g]
    assert saw_one and len(saw_one) < FOLLOWERS, "change 2 came while the lanes were being woken for 1"
    for lines in got:
        assert lines in ([0, 1, 2, 3], [0, 2, 3]), lines  # no repeats, no gaps but the superseded 1
