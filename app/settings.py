"""The one configuration object. Nothing else in the project reads the environment."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, MAX_COST_BPS

DEFAULT_ENV_FILE = "/etc/trad/trad.env"


def _credentials_dir() -> Path | None:
    """systemd's credentials directory ($CREDENTIALS_DIRECTORY): one file per secret, named
    after the setting (database_url, redis_url, api_token), readable only by the service."""
    value = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(value) if value else None
    return path if path is not None and path.is_dir() else None


# Written by `make dev` in this checkout while its stack is up (its DATABASE_URL, REDIS_URL and
# API_TOKEN), so `trad` run from the checkout reaches that stack with nothing exported.
DEV_ENV_FILE = Path(__file__).resolve().parents[1] / "var" / "dev.env"


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def _env_file() -> Path | None:
    """The env file named by TRAD_ENV_FILE (default /etc/trad/trad.env), if it can be read; else
    the dev stack's file in this checkout, if it is up. A deployed server, which has the
    former, never reads the latter."""
    path = Path(os.environ.get("TRAD_ENV_FILE", DEFAULT_ENV_FILE))
    if _readable(path):
        return path
    return DEV_ENV_FILE if _readable(DEV_ENV_FILE) else None


def inherited_sockets() -> list[int]:
    """File descriptors of the listening sockets systemd passed to this process (socket
    activation: $LISTEN_FDS of them from fd 3, meant for $LISTEN_PID); none otherwise. The
    variables are removed, so no child process takes the sockets for its own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return list(range(3, 3 + count))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    database_url: str = "postgresql+psycopg://trad@127.0.0.1:5432/trad"
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_token: SecretStr = SecretStr("")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The reverse proxy in front of the API (nginx on loopback when deployed): only a connection
    # from one of these addresses or networks may name the client (X-Forwarded-For) and the
    # scheme (X-Forwarded-Proto); anyone else is taken at its own address. Empty: nobody.
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1", description="comma-separated addresses or networks of trusted reverse proxies"
    )
    log_level: str = "INFO"
    # `make dev` only: the ports of the throwaway PostgreSQL and Redis it starts.
    dev_postgres_port: int = 55432
    dev_redis_port: int = 56379

    # Queue and admission.
    max_queued_jobs: int = Field(1000, ge=1, description="start answers 429 beyond this many queued jobs")
    max_request_bytes: int = Field(64 * 1024, ge=1024)

    # API capacity: processes, threads for blocking routes, database connections per process.
    api_processes: int = Field(1, ge=1, le=64, description="API processes sharing the port (uvicorn workers)")
    api_threads: int = Field(40, ge=1, le=1000, description="threads per API process for blocking routes")
    db_pool_size: int = Field(10, ge=1, le=200, description="pooled PostgreSQL connections per API process")
    db_max_overflow: int = Field(10, ge=0, le=200, description="connections beyond the pool under bursts")
    db_read_pool_size: int = Field(
        5, ge=1, le=100, description="connections per API process for progress reads and job lists on the event loop"
    )
    db_start_pool_size: int = Field(
        4, ge=1, le=100, description="connections per API process for starting jobs on the event loop"
    )
    db_pool_pre_ping: bool = Field(
        False,
        description="also ping a pooled connection before each use (a round trip per request); a connection "
        "closed by a PostgreSQL restart is replaced without it",
    )
    migration_lock_timeout_s: float = Field(
        10.0, gt=0, description="a migration waiting longer than this for a table lock fails instead of queueing"
    )

    # Following a job's progress (NDJSON or Server-Sent Events): bounds and timings.
    follow_max_streams: int = Field(10000, ge=1, description="open progress streams per API process")
    follow_max_streams_per_client: int = Field(1000, ge=1, description="open progress streams per client address")
    follow_keepalive_s: float = Field(15.0, gt=0, description="a stream with no change sends a keep-alive this often")
    follow_resync_s: float = Field(10.0, gt=0, description="followed jobs are re-read this often as a safety net")
    follow_max_s: float = Field(6 * 3600.0, gt=0, description="longest life of one progress stream")

    # Liveness and recovery.
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_stale_s: float = Field(30.0, gt=0)
    maintenance_interval_s: float = Field(5.0, gt=0, description="reaper and reconciler period")
    maintenance_in_api: bool = Field(True, description="the API also hosts the reaper and reconciler")
    schedule_misfire_grace_s: float = Field(
        120.0, gt=0, description="a schedule tick fired later than this is a misfire (its policy decides)"
    )
    reconcile_grace_s: float = Field(5.0, ge=0, description="age before a queued row is checked in Redis")
    db_outage_budget_s: float = Field(60.0, ge=0, description="how long a job waits out a PostgreSQL outage")
    stop_budget_s: float = Field(
        20.0, gt=0, description="longest a stopping job waits for PostgreSQL (keep below TimeoutStopSec)"
    )
    cancel_poll_s: float = Field(0.5, gt=0)
    cancel_grace_s: float = Field(10.0, gt=0, description="time a job has to stop before it is killed")
    retry_backoff_base_s: float = Field(5.0, ge=0)
    retry_backoff_max_s: float = Field(300.0, ge=0)
    worker_idle_wait_s: int = Field(10, ge=1, description="longest blocking pop; bounds watchdog gaps")

    # What one job may load: bars per job (checked at submit, 422 beyond), read in chunks
    # straight into arrays, with a stop check between chunks; and an optional address-space
    # limit for each job process (0 = none; the units' MemoryMax is the production bound).
    max_bars_per_job: int = Field(2_000_000, ge=1)
    # The costs of a training job that names none, in basis points of each fill's notional.
    default_fee_bps: float = Field(DEFAULT_FEE_BPS, ge=0, le=MAX_COST_BPS, allow_inf_nan=False)
    default_slippage_bps: float = Field(DEFAULT_SLIPPAGE_BPS, ge=0, le=MAX_COST_BPS, allow_inf_nan=False)
    candle_chunk_bars: int = Field(50_000, ge=100)
    job_memory_limit_mb: int = Field(0, ge=0)

    # `trad candles fetch`: another origin for the exchange's REST API (a mirror; the tests' local
    # exchange), keeping the exchange's paths; empty: the exchange's own. How long a fetch retries
    # network errors, 429 and 5xx answers before it gives up (the next run resumes).
    exchange_base_url: str = ""
    fetch_retry_budget_s: float = Field(120.0, ge=0)

    # Per job kind (each kind reads its own in `app.kinds`): attempts before failing, hard timeout of one
    # attempt, and the longest time without progress before an attempt counts as stalled.
    training_max_attempts: int = Field(3, ge=1, le=100)
    training_timeout_s: int = Field(30 * 60, ge=10)
    training_stall_timeout_s: int = Field(5 * 60, ge=1)
    smoke_max_attempts: int = Field(2, ge=1, le=100)
    smoke_timeout_s: int = Field(120, ge=10)
    smoke_stall_timeout_s: int = Field(60, ge=1)
    # A refresh waits out an exchange for FETCH_RETRY_BUDGET_S without progress: its stall
    # timeout must be longer than that.
    candles_refresh_max_attempts: int = Field(3, ge=1, le=100)
    candles_refresh_timeout_s: int = Field(3600, ge=10)
    candles_refresh_stall_timeout_s: int = Field(300, ge=1)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """Addresses or networks only: a host name or `*` would let any client name itself."""
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item)
            except ValueError:
                raise ValueError(f"FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network") from None
        return value

    @property
    def trusted_proxies(self) -> list[str]:
        return [part.strip() for part in self.forwarded_allow_ips.split(",") if part.strip()]

    @model_validator(mode="after")
    def _liveness_bounds(self) -> Settings:
        """A heartbeat must be able to land (and a reaper pass see it) well within the stale bound."""
        if self.heartbeat_stale_s <= self.heartbeat_interval_s + self.maintenance_interval_s:
            raise ValueError("HEARTBEAT_STALE_S must exceed HEARTBEAT_INTERVAL_S + MAINTENANCE_INTERVAL_S")
        return self

    @property
    def api_token_value(self) -> str:
        return self.api_token.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, then the env file (or, without one, `make dev`'s file in
    this checkout), then systemd credentials (the first source that names a setting wins)."""
    return Settings(_env_file=_env_file(), _secrets_dir=_credentials_dir())
