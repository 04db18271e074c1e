"""Baseline: a bare FastAPI app under uvicorn answering one PostgreSQL read, a job row by its
primary key through a pooled SQLAlchemy engine, in a plain (threadpool) route.

    .venv/bin/python bench/bare_pg.py PORT postgresql+psycopg://USER@HOST:PORT/DB

`bench/api.py` starts it beside trad to anchor the figures of the same run."""

from __future__ import annotations

import sys
import uuid

import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine, text

engine = create_engine(sys.argv[2], pool_size=40, max_overflow=0)
app = FastAPI()


@app.get("/jobs/{job_id}")
def read(job_id: uuid.UUID) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, status, percent, updated_at FROM training_jobs WHERE id = :id"), {"id": job_id}
        ).one()
    return {"job_id": str(row.id), "status": row.status, "percent": row.percent, "updated_at": row.updated_at}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
