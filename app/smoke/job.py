"""The `smoke` job: proves the whole pipeline (API or CLI → PostgreSQL → Redis → worker →
PostgreSQL) after a deploy. It does a little real work so every layer is exercised."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import text

from app.kinds.smoke import STEPS

if TYPE_CHECKING:
    from app.execution.context import JobContext

MAX_MEMORY_MB = 16_384


def run_smoke_job(ctx: JobContext) -> None:
    ctx.run(lambda s: s.execute(text("SELECT 1")))
    digest = b"trad"
    hashes = min(int(ctx.params.get("hashes_per_step", 20_000)), 100_000_000)
    # `memory_mb` holds that much memory for the run: proves a job's memory bound (the units'
    # MemoryMax, or JOB_MEMORY_LIMIT_MB) stops a runaway job and nothing else.
    held = b"\x01" * (min(int(ctx.params.get("memory_mb", 0)), MAX_MEMORY_MB) * 2**20)  # touched pages
    for step in range(1, STEPS + 1):
        ctx.check()
        for _ in range(hashes):
            digest = hashlib.sha256(digest).digest()
        ctx.progress(100.0 * step / STEPS, "smoke", f"step {step} of {STEPS}", iteration=step)
    del held
    return None
