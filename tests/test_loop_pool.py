"""Starts send their dispatches through `LoopSender`: the dispatches of concurrent starts go to
Redis together, and each start learns whether its own was sent. Against the suite's real Redis."""

from __future__ import annotations

import asyncio
import uuid

from redis import Redis
from redis.connection import AbstractConnection

from app.models import Job
from app.queue import redis_connection
from app.services import dispatch


def new_job(priority: str = "normal") -> Job:
    job = Job(id=uuid.uuid4(), kind="smoke", priority=priority)
    dispatch.assign(job)
    return job


def test_concurrent_sends_go_out_together_and_every_dispatch_arrives(clean, monkeypatch):
    connection = redis_connection(clean.redis_url)
    sender = dispatch.LoopSender(connection)
    sent_packets = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent_packets.append(command)
        return send(self, command, check_health)

    async def main() -> list[bool]:
        assert await sender.send(new_job(), clean)  # RQ asks the server's version once per queue
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
        return await asyncio.gather(*(sender.send(job, clean) for job in jobs))

    jobs = [new_job(priority) for priority in ("high", "normal", "low") * 10]
    assert asyncio.run(main()) == [True] * 30
    assert len(sent_packets) == 1, "thirty dispatches, one MULTI … EXEC"
    redis = Redis.from_url(clean.redis_url)
    queued = {
        m.decode()
        for name in ("training-high", "training", "training-low")
        for m in redis.lrange(f"rq:queue:{name}", 0, -1)
    }
    assert {job.rq_job_id for job in jobs} <= queued


def test_sends_while_redis_is_unreachable_report_false_to_every_caller(clean):
    sender = dispatch.LoopSender(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))

    async def main() -> list[bool]:
        return await asyncio.gather(*(sender.send(new_job(), clean) for _ in range(5)))

    assert asyncio.run(main()) == [False] * 5


def test_a_sender_serves_a_later_event_loop(clean):
    """The API's test clients each run their own loop: a sender must not keep the first one's task."""
    sender = dispatch.LoopSender(redis_connection(clean.redis_url))
    assert asyncio.run(sender.send(new_job(), clean)) is True
    assert asyncio.run(sender.send(new_job(), clean)) is True
