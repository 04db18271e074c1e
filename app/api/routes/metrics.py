"""GET /metrics in the Prometheus text format. Every figure is read at scrape time: job and
attempt counts from PostgreSQL (the truth), queue depth and workers (in all and per host) from Redis."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis import Redis

from app import queue
from app.api.deps import RedisDep, SettingsDep
from app.clock import utcnow
from app.db import transaction
from app.repositories import attempts as attempts_repo
from app.repositories import jobs as jobs_repo
from app.repositories import schedules as schedules_repo
from app.status import JobStatus

router = APIRouter(tags=["health"])


class TradCollector:
    def __init__(self, database_url: str, redis: Redis) -> None:
        self.database_url, self.redis = database_url, redis

    def collect(self) -> Iterator[Metric]:
        yield from self._postgres()
        yield from self._redis()

    def _postgres(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("trad_postgres_up", "1 if PostgreSQL answered this scrape")
        try:
            with transaction(self.database_url) as s:
                jobs = jobs_repo.count_by_kind_and_status(s)
                attempts = attempts_repo.count_by_status(s)
                oldest = jobs_repo.oldest_queued_age_s(s)
                schedules = schedules_repo.counts(s)
                overdue_since = schedules_repo.oldest_overdue(s)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_job = GaugeMetricFamily("trad_jobs", "Jobs by kind and status", labels=["kind", "status"])
        seen = {(k, st): n for k, st, n in jobs}
        for kind in sorted({k for k, _ in seen} | {"training"}):
            for status in JobStatus:
                by_job.add_metric([kind, status], seen.get((kind, status), 0))
        yield by_job
        by_attempt = CounterMetricFamily("trad_attempts", "Attempts ever started, by outcome", labels=["status"])
        for status, n in attempts.items():
            by_attempt.add_metric([status], n)
        yield by_attempt
        yield GaugeMetricFamily("trad_oldest_queued_job_seconds", "Age of the oldest queued job", value=oldest)
        by_state = GaugeMetricFamily("trad_schedules", "Schedules by state", labels=["state"])
        by_state.add_metric(["active"], schedules.get(False, 0))
        by_state.add_metric(["paused"], schedules.get(True, 0))
        yield by_state
        lag = 0.0 if overdue_since is None else max(0.0, (utcnow() - overdue_since).total_seconds())
        yield GaugeMetricFamily(
            "trad_schedule_fire_lag_seconds",
            "How long the most overdue active schedule tick has been waiting to fire (0 when none is due)",
            value=lag,
        )

    def _redis(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("trad_redis_up", "1 if Redis answered this scrape")
        try:
            depths = queue.queue_depths(self.redis)
            workers = queue.worker_count(self.redis)
            by_host = queue.workers_by_host(self.redis)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("trad_queue_depth", "Dispatches waiting in Redis", labels=["priority"])
        for priority, n in depths.items():
            depth.add_metric([priority], n)
        yield depth
        yield GaugeMetricFamily("trad_workers", "Workers registered in Redis", value=workers)
        per_host = GaugeMetricFamily("trad_workers_by_host", "Workers registered in Redis, by host", labels=["host"])
        for host, n in sorted(by_host.items()):
            per_host.add_metric([host], n)
        yield per_host


@router.get("/metrics", response_class=Response)
def metrics(settings: SettingsDep, redis: RedisDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TradCollector(settings.database_url, redis))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
