"""The `candles_refresh` job: the fetch `trad candles fetch` runs (`app.services.candle_fetch`),
inside a worker.

Every page the exchange returns is written in its own transaction before the job looks for a
cancel or a stop, so a canceled or checkpointed attempt keeps every bar it fetched, and the next
attempt resumes after the last stored bar. Progress is the share of the range fetched, with the
bars fetched of those expected and an ETA. Errors:

- the exchange, symbol or timeframe does not exist, or the range is wrong: a named
  `JobInputError` (`UnknownExchange`, `UnknownSymbol`, `UnknownTimeframe`, `RefreshInputError`),
  never retried;
- the exchange did not answer within `FETCH_RETRY_BUDGET_S` of its own retries (network, 429,
  5xx): `ExchangeUnavailable`, retried with backoff while the job's attempts last.

A refresh a schedule started (its parameters carry `schedule`) starts that fire's training job
in the transaction that marks it succeeded (`app.services.schedules.train_after_refresh`).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime

from sqlalchemy.orm import Session

from app import exchanges
from app.engine.candles import SYMBOL_PATTERN, TIMEFRAMES
from app.execution import signals
from app.execution.context import JobContext
from app.execution.errors import JobInputError, Preempted, TransientJobError
from app.services import candle_fetch
from app.services import schedules as schedules_service

log = logging.getLogger(__name__)
PHASE = "fetching"
PROGRESS_EVERY_S = 1.0  # at most one progress write a second; every page is still stored and checked


class UnknownExchange(JobInputError):
    pass


class UnknownSymbol(JobInputError):
    pass


class UnknownTimeframe(JobInputError):
    pass


class RefreshInputError(JobInputError):
    pass


class ExchangeUnavailable(TransientJobError):
    pass


_INPUT_ERRORS = {"exchange": UnknownExchange, "symbol": UnknownSymbol, "timeframe": UnknownTimeframe}


def _sleep_unless_stopped(seconds: float) -> None:
    """The exchange's backoff: wakes within 0.1 s of a stop request and checkpoints."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if signals.checkpoint_requested():
            raise Preempted("worker stopping while waiting for the exchange")
        time.sleep(min(left, 0.1))


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Reporter:
    """The fetch's progress callback: checks for cancel or stop after every stored page, and
    records progress at most every PROGRESS_EVERY_S."""

    def __init__(self, ctx: JobContext, timeframe: str) -> None:
        self.ctx, self.step, self.last = ctx, TIMEFRAMES[timeframe], 0.0

    def __call__(self, state: candle_fetch.FetchProgress) -> None:
        self.ctx.check()
        done = state.cursor_ms >= state.end_ms
        if not done and time.monotonic() - self.last < PROGRESS_EVERY_S:
            return
        self.last = time.monotonic()
        expected = max(0, (state.end_ms - state.start_ms) // self.step)
        self.ctx.progress(
            100.0 * state.fraction,
            PHASE,
            f"{state.fetched:,} bars fetched of about {expected:,} ({state.requests} requests)",
            iteration=state.fetched,
            eta_seconds=None if done else state.eta_s,
        )


def run_refresh_job(ctx: JobContext):
    p = ctx.params
    try:
        exchange = exchanges.Exchange(
            p["exchange"],
            base_url=ctx.settings.exchange_base_url,
            retry_budget_s=ctx.settings.fetch_retry_budget_s,
            on_retry=lambda exc, delay: log.warning("%s: %s; retrying in %.1fs", p["exchange"], exc, delay),
            sleep=_sleep_unless_stopped,
        )
        report = candle_fetch.fetch(
            ctx.settings.database_url,
            exchange,
            p["symbol"],
            p["timeframe"],
            symbol_pattern=re.compile(SYMBOL_PATTERN),
            since=_time(p.get("since")),
            until=_time(p.get("until")),
            store_as=p.get("as"),
            batch_bars=1,  # every page in its own transaction: a stop loses nothing fetched
            progress=_Reporter(ctx, p["timeframe"]),
        )
    except exchanges.ExchangeInputError as exc:
        raise _INPUT_ERRORS.get(exc.field, RefreshInputError)(f"{exc.field}: {exc.message}") from None
    except candle_fetch.FetchInputError as exc:
        raise RefreshInputError(f"{exc.field}: {exc.message}") from None
    except exchanges.ExchangeUnavailable as exc:
        raise ExchangeUnavailable(str(exc)) from None
    progress = report.progress
    gaps = f", {len(report.gaps)} gaps ({sum(g.missing for g in report.gaps):,} bars missing)" if report.gaps else ""
    span = (
        f" from {candle_fetch.utc_text(report.first_ms)} to {candle_fetch.utc_text(report.last_ms)}"
        if report.first_ms is not None and report.last_ms is not None
        else ""
    )
    ctx.progress(
        100.0,
        PHASE,
        f"{progress.inserted:,} new bars of {progress.fetched:,} fetched{span}{gaps} "
        f"into {report.symbol} {p['timeframe']} ({progress.requests} requests)",
        iteration=progress.fetched,
    )
    log.info("refresh stored %d bars (%d new) of %s", progress.stored, progress.inserted, report.symbol)
    fire = p.get("schedule")
    if fire is None:
        return None

    def start_training(session: Session) -> None:
        schedules_service.train_after_refresh(session, ctx.settings, ctx.job_id, fire)

    return start_training
