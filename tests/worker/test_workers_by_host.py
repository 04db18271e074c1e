"""Workers on several hosts: the queue lists each worker's host and /metrics counts workers per
host. A second host is a real worker process in its own UTS namespace with its own host name."""

from __future__ import annotations

import os
import re
import shutil
import socket

import pytest

from tests.support import process_env, start_worker, wait_until

OTHER_HOST = "trad-test-node2"


@pytest.fixture
def worker_elsewhere(clean, tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a worker under another host name needs root and unshare")
    launcher = ("unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh")
    worker = start_worker(process_env(clean), "w-elsewhere", tmp_path, launcher=launcher)
    yield worker
    worker.kill_all()


def test_queue_and_metrics_show_workers_per_host(client, workers, worker_elsewhere):
    workers("w-here-1")
    workers("w-here-2")
    here = socket.gethostname()

    def listed():
        found = {w["name"]: w for w in client.get("/api/v2/training/queue").json()["worker_list"]}
        return found if {"w-here-1", "w-here-2", "w-elsewhere"} <= set(found) else None

    found = wait_until(listed, timeout=60, what="three registered workers")
    assert found["w-here-1"]["host"] == found["w-here-2"]["host"] == here
    assert found["w-elsewhere"]["host"] == OTHER_HOST
    metrics = client.get("/metrics").text
    by_host = dict(re.findall(r'^trad_workers_by_host\{host="([^"]+)"\} (\S+)$', metrics, re.M))
    assert float(by_host[here]) == 2 and float(by_host[OTHER_HOST]) == 1, by_host
    assert re.search(r"^trad_workers 3\.0$", metrics, re.M), metrics
