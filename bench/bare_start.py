"""Baseline: a bare FastAPI app under uvicorn accepting a job the plainest way its parts allow:
the JSON body checked by a pydantic model, one INSERT of the job's row committed through a pooled
SQLAlchemy engine, then a plain RQ enqueue of it, in a plain (threadpool) route. No candle check,
no admission bound, no idempotency key, no dispatch id, no log line.

    .venv/bin/python bench/bare_start.py PORT postgresql+psycopg://USER@HOST:PORT/DB redis://HOST:PORT/0

`bench/api.py` starts it beside trad to anchor the start figures of the same run. Its rows go to
a table of its own (`bare_jobs`) and its jobs to an RQ queue no worker reads (`bare`)."""

from __future__ import annotations

import sys
import uuid

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, text

engine = create_engine(sys.argv[2], pool_size=40, max_overflow=0)
queue = Queue("bare", connection=Redis.from_url(sys.argv[3]), serializer=JSONSerializer)
app = FastAPI()
INSERT = text("INSERT INTO bare_jobs (id, params) VALUES (:id, CAST(:params AS jsonb)) RETURNING created_at")


class Start(BaseModel):
    strategy: str = Field(max_length=64)
    symbol: str = Field(max_length=32)
    timeframe: str = Field(max_length=8)
    n_iterations: int = Field(ge=1, le=10_000)
    seed: int | None = None


@app.post("/start", status_code=202)
def start(body: Start) -> dict:
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        created_at = conn.execute(INSERT, {"id": job_id, "params": body.model_dump_json()}).scalar_one()
    queue.enqueue_call("os.getpid", job_id=str(job_id), result_ttl=60)
    return {"job_id": str(job_id), "status": "queued", "created_at": created_at}


if __name__ == "__main__":
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bare_jobs "
                "(id uuid PRIMARY KEY, params jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
