"""Baseline: a bare FastAPI app under uvicorn answering `/ping`, nothing else.

    .venv/bin/python bench/bare_ping.py PORT

`bench/api.py` starts it beside trad to anchor the figures of the same run."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
