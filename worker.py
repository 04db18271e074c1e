"""Start one trad worker: `python worker.py --name trad-worker-1`.

Listens on training-high, training, training-low in strict priority order and runs each job
in a forked process. Under systemd (Type=notify) it reports READY once PostgreSQL and Redis
answer, pings the watchdog, and shows what it is doing in STATUS.

Exit status: 0 after a stop request (SIGTERM/SIGINT) or a burst that ran dry; 1 when the work
loop ended by itself (RQ quits on an unexpected error), so `Restart=on-failure` brings it back.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from app import logs, notify
from app.db import get_engine
from app.queue import redis_connection
from app.readiness import wait_for_dependencies
from app.settings import get_settings
from app.worker import TradWorker, preload

log = logging.getLogger("trad.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="worker name, unique per running worker")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for PostgreSQL and Redis")
    args = parser.parse_args(argv)

    settings = get_settings()
    logs.configure(settings.log_level, process=args.name)
    preload()
    wait_for_dependencies(settings, args.wait)
    get_engine(settings.database_url).dispose()  # no pooled connection crosses a fork
    worker = TradWorker(settings, args.name, redis_connection(settings.redis_url))
    # Everything loaded so far stays out of garbage collections from now on, in this process
    # and in every job process it forks: a collection in a job process no longer touches
    # (and so copies) the pages of every object the worker inherited to it.
    gc.freeze()
    notify.ready("idle")
    log.info("worker %s ready", args.name)
    try:
        worker.work(burst=args.burst, logging_level=settings.log_level)
    finally:
        notify.stopping()
    if worker.stopped_unasked:
        log.error("worker %s stopped without being asked to; exiting with status 1", args.name)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
