"""`trad` (or `python -m app.cli`): operator commands on the server.

trad db upgrade | db check
trad smoke [--timeout S]
trad candles import --symbol BTCUSDT --timeframe 1m FILE
trad candles synth --symbol BTCUSDT --timeframe 1m --bars 20000 [--seed 1]
trad candles list
trad candles fetch --exchange binance --symbol BTC/USDT --timeframe 1m [--since 2024-01-01] [--until …] [--as SYMBOL]
trad jobs list [--status S] | jobs show ID | jobs cancel ID | jobs retry ID
trad jobs follow ID [--interval S]   (exit status: 0 succeeded, 1 failed, 4 canceled)
trad schedules list | schedules show ID|NAME | schedules pause ID|NAME | schedules resume ID|NAME
trad strategies list   (exit status 1 when an installed strategy is broken)
trad maintenance run-once
trad strategies check NAME --symbol S --timeframe TF [--start …] [--end …] [--params JSON] [--seed N]
                          (exit status: 0 passed, 1 bias found, 2 bad input)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from app import migrate
from app.db import session_factory, transaction
from app.queue import redis_connection
from app.settings import Settings, get_settings
from app.status import JobStatus
from app.training.catalog import SYMBOL, TIMEFRAMES


class CliError(Exception):
    pass


def _symbol(value: str) -> str:
    if not SYMBOL.match(value):
        raise argparse.ArgumentTypeError("symbol must be 2-20 capital letters or digits, e.g. BTCUSDT")
    return value


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a job id: {value!r}") from None


def _positive(limit: int):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if not 1 <= n <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}")
        return n

    return parse


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "upgrade":
        migrate.upgrade(settings.database_url)
        print("database schema is at the latest revision")
    else:
        migrate.check(settings.database_url)
        print("models and schema agree")
    return 0


def cmd_smoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.repositories import jobs as jobs_repo
    from app.services import dispatch
    from app.services import jobs as jobs_service

    with session_factory(settings.database_url)() as session:
        job = jobs_service.start_smoke(session, settings)
        delivery = dispatch.commit_and_send(session, redis_connection(settings.redis_url), settings)
    note = "" if delivery.complete else " (Redis unavailable: the reconciler will enqueue it)"
    print(f"smoke job {job.id} queued{note}")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        with transaction(settings.database_url) as session:
            row = jobs_repo.get(session, job.id)
            status, message = JobStatus(row.status), row.message
        if status.is_finished:
            print(f"smoke job {job.id} {status}: {message}")
            return 0 if status.is_succeeded else 1
        time.sleep(0.2)
    print(f"smoke job {job.id} not finished after {args.timeout}s (is a worker running?)", file=sys.stderr)
    return 1


def cmd_candles(args: argparse.Namespace, settings: Settings) -> int:
    from app.engine.csv_import import CandleParseError
    from app.repositories import candles as candles_repo
    from app.services import candles as candles_service

    if args.action == "list":
        with transaction(settings.database_url) as session:
            for symbol, timeframe, source, count, first, last in candles_repo.coverage(session):
                print(f"{symbol}\t{timeframe}\t{count}\t{first.isoformat()}\t{last.isoformat()}\t{source}")
        return 0
    if args.action == "synth":
        with transaction(settings.database_url) as session:
            report = candles_service.generate_synthetic(session, args.symbol, args.timeframe, args.bars, args.seed)
        print(f"{report.inserted} new synthetic bars of {report.rows} for {args.symbol} {args.timeframe}")
        return 0
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    try:
        with path.open(encoding="utf-8", newline="") as fh, transaction(settings.database_url) as session:
            report = candles_service.import_csv(session, args.symbol, args.timeframe, fh)
    except CandleParseError as exc:
        raise CliError(f"{path}: {exc}; nothing was imported") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not a UTF-8 text file ({exc.reason}); nothing was imported") from None
    print(f"{path}: {report.rows} rows read, {report.inserted} new bars for {args.symbol} {args.timeframe}")
    return 0


def _when(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or time: {value!r} (e.g. 2024-01-01, 2024-01-01T12:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_candles_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from app import fetch_line
    from app.exchanges import Exchange, ExchangeInputError, ExchangeUnavailable
    from app.services import candle_fetch

    shown = fetch_line.ProgressWriter(sys.stderr)
    try:
        exchange = Exchange(
            args.exchange,
            base_url=settings.exchange_base_url,
            retry_budget_s=settings.fetch_retry_budget_s,
            on_retry=shown.retrying,
        )
        report = candle_fetch.fetch(
            settings.database_url,
            exchange,
            args.symbol,
            args.timeframe,
            symbol_pattern=SYMBOL,
            since=args.since,
            until=args.until,
            store_as=args.store_as,
            batch_bars=args.batch_bars,
            progress=shown,
        )
    except (ExchangeInputError, candle_fetch.FetchInputError) as exc:
        raise CliError(f"--{exc.field}: {exc.message}; nothing was fetched") from None
    except ExchangeUnavailable as exc:
        shown.close()
        print(f"trad: error: {exc}; the bars stored so far are kept, run it again to resume", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        shown.close()
        print("trad: stopped; the batches written are kept, run it again to resume", file=sys.stderr)
        return 130
    shown.close()
    print("\n".join(fetch_line.summary(report)))
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from app.repositories import job_reads
    from app.services import dispatch
    from app.services import jobs as jobs_service
    from app.services.errors import ServiceError

    try:
        with dispatch.unit_of_work(settings) as uow:
            session = uow.session
            if args.action == "list":
                rows, total = job_reads.page(
                    session, status=args.status, kind=None, strategy=None, limit=args.limit, offset=0
                )
                for j in rows:
                    print(f"{j.id}\t{j.kind}\t{j.status}\t{j.percent:5.1f}%\t{j.phase or '-'}\t{j.created_at:%F %T}")
                print(f"{len(rows)} of {total}")
                return 0
            if args.action == "show":
                j = jobs_service.get(session, args.job_id)
                print(json.dumps({c.key: getattr(j, c.key) for c in j.__table__.columns}, default=str, indent=2))
                return 0
            if args.action == "cancel":
                job = jobs_service.cancel(session, args.job_id)
            else:
                job = jobs_service.retry(session, settings, args.job_id)
    except ServiceError as exc:
        raise CliError(exc.message) from None
    print(f"job {job.id}: {job.status} ({job.message})")
    return 0


def cmd_follow(args: argparse.Namespace, settings: Settings) -> int:
    from app import progress_line
    from app.services.errors import ServiceError

    try:
        progress_line.snapshot(settings, args.job_id)
    except ServiceError as exc:
        raise CliError(exc.message) from None
    stopped = _stop_on_signals()
    try:
        return progress_line.follow(lambda: progress_line.snapshot(settings, args.job_id), sys.stdout, args.interval)
    except _Stopped as stop:
        print("\nstopped following; the job carries on", file=sys.stderr)
        return 128 + stop.signum
    finally:
        stopped()


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def _stop_on_signals() -> Callable[[], None]:
    """SIGINT and SIGTERM stop following, also where SIGINT came in ignored (a script's
    background command, CI) and without a terminal. Returns what puts the old handlers back."""

    def stop(signum: int, frame: object) -> None:
        raise _Stopped(signum)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler)

    return restore


def cmd_schedules(args: argparse.Namespace, settings: Settings) -> int:
    from app.api import presenters
    from app.repositories import schedules as schedules_repo
    from app.services import schedules as schedules_service
    from app.services.errors import ServiceError

    try:
        with transaction(settings.database_url) as session:
            if args.action == "list":
                rows = schedules_repo.list_all(session)
                for s in rows:
                    state = "paused" if s.paused else f"next {s.next_fire_at:%F %T%z}"
                    print(f"{s.id}\t{s.name}\t{s.cron}\t{s.timezone}\t{state}")
                print(f"{len(rows)} schedules")
                return 0
            schedule = schedules_service.resolve(session, args.schedule)
            if args.action == "show":
                # The API's own shape, so a refused fire's reason and the rest read the same.
                detail = presenters.schedule_detail(schedule, schedules_repo.recent_fires(session, schedule.id))
                print(json.dumps(detail.model_dump(mode="json"), indent=2))
                return 0
            action = schedules_service.pause if args.action == "pause" else schedules_service.resume
            schedule = action(session, schedule.id)
            print(f"schedule {schedule.name}: {'paused' if schedule.paused else f'next {schedule.next_fire_at}'}")
    except ServiceError as exc:
        raise CliError(exc.message) from None
    return 0


def _param_text(p: dict) -> str:
    if p["kind"] == "categorical":
        return f"{p['name']}∈{{{','.join(map(str, p['choices']))}}}={p['default']}"
    scale = " log" if p.get("log") else ""
    return f"{p['name']}:{p['kind']}{scale}[{p['low']:g},{p['high']:g}]={p['default']:g}"


def cmd_strategies(args: argparse.Namespace, settings: Settings) -> int:
    from app.training.catalog import broken_strategies, strategies

    print("name\tpackage\tversion\twarmup\tparameters")
    for s in strategies().values():
        info = s.describe()
        warmup = f"{info['warmup']} (max {info['max_warmup']})"
        print(f"{s.name}\t{s.package}\t{s.version}\t{warmup}\t{' '.join(_param_text(p) for p in info['params'])}")
    broken = broken_strategies()
    for name, why in broken.items():
        print(f"trad: strategy {name} is broken: {why}", file=sys.stderr)
    return 1 if broken else 0


def cmd_maintenance(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import maintenance

    report = maintenance.run_once(settings, redis_connection(settings.redis_url))
    if not report.ran:
        print("another process holds the maintenance lock; nothing done")
    else:
        print(f"reaped: {len(report.reaped)}, redispatched: {len(report.redispatched)}, fired: {len(report.fired)}")
    return 0


# ---- trad strategies check: the bias checks on stored candles ------------------------------


def _params_json(value: str) -> dict:
    try:
        params = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from None
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"fast": 10, "slow": 50}\'')
    return params


def _default_and_drawn(strategy, seed: int, drawn: int = 2) -> list[dict]:
    """The strategy's defaults, then `drawn` other parameter sets drawn from its space (seeded),
    each meeting its constraint."""
    import numpy as np

    from app.engine.errors import InvalidParams

    rng, found = np.random.default_rng(seed), [strategy.validate_params(strategy.defaults)]
    for _ in range(100 * drawn):
        try:
            clean = strategy.validate_params({spec.name: spec.sample(rng) for spec in strategy.space})
        except InvalidParams:
            continue
        if clean not in found:
            found.append(clean)
        if len(found) == 1 + drawn:
            break
    return found


def cmd_strategies_check(args: argparse.Namespace, settings: Settings) -> int:
    from app.engine import bias
    from app.engine.errors import InvalidParams, StrategyBias, TrainingInputError, UnknownStrategy
    from app.engine.registry import get_strategy
    from app.services import candles as candles_service

    try:
        strategy = get_strategy(args.name)
    except UnknownStrategy as exc:
        raise CliError(f"NAME: {exc}") from None
    if args.params is not None:
        try:
            param_sets = [strategy.validate_params(args.params)]
        except InvalidParams as exc:
            raise CliError(f"--params: {exc}") from None
    else:
        param_sets = _default_and_drawn(strategy, args.seed)
    if args.start and args.end and args.start >= args.end:
        raise CliError("--end: must be after --start")
    with transaction(settings.database_url) as session:
        candles = candles_service.load(session, args.symbol, args.timeframe, args.start, args.end)
    if candles is None or len(candles) < 2:
        raise CliError(
            f"--symbol: no {args.timeframe} candles for {args.symbol} in that range (see `trad candles list`)"
        )
    print(f"{strategy.name} on {len(candles)} {args.timeframe} bars of {args.symbol}")
    for params in param_sets:
        try:
            report = bias.check(strategy, candles, params, seed=args.seed)
        except StrategyBias as exc:
            print(f"FAILED {type(exc).__name__} at {exc.time} (bar {exc.bar}): {exc}")
            return 1
        except TrainingInputError as exc:
            raise CliError(f"{strategy.name} with parameters {params}: {exc}") from None
        except Exception as exc:  # the strategy's own code failed: not a bias, and not exit 1
            traceback.print_exc()
            raise CliError(f"{strategy.name} with parameters {params} raised {type(exc).__name__}: {exc}") from None
        found = report.as_dict()
        warm = found["warmup"]
        histories = ", ".join(str(h) for h in warm["history_lengths"]) or "none"
        print(
            f"passed {params}: look-ahead at {len(report.lookahead_bars)} bars "
            f"({', '.join(report.lookahead_times)}); warm-up of {warm['declared']} bars against "
            f"{histories} bars of history on {len(warm['ranges'])} ranges"
            + (f" ({warm['skipped']})" if warm["skipped"] else "")
            + f"; {report.seconds:.2f} s"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trad", description="Operate the trad training-job service.")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "check"])
    db.set_defaults(func=cmd_db)

    smoke = sub.add_parser("smoke", help="run a smoke job end to end and wait for it")
    smoke.add_argument("--timeout", type=_positive(3600), default=60)
    smoke.set_defaults(func=cmd_smoke)

    candles = sub.add_parser("candles", help="candle data")
    csub = candles.add_subparsers(dest="action", required=True)
    imp = csub.add_parser("import", help="import a CSV file (a header naming the columns, or an exchange kline dump)")
    imp.add_argument("--symbol", type=_symbol, required=True)
    imp.add_argument("--timeframe", choices=TIMEFRAMES, required=True)
    imp.add_argument("file")
    synth = csub.add_parser("synth", help="generate seeded synthetic candles (labelled synthetic)")
    synth.add_argument("--symbol", type=_symbol, required=True)
    synth.add_argument("--timeframe", choices=TIMEFRAMES, default="1m")
    synth.add_argument("--bars", type=_positive(5_000_000), default=20_000)
    synth.add_argument("--seed", type=int, default=1)
    csub.add_parser("list", help="stored candles per symbol and timeframe")
    fetch = csub.add_parser("fetch", help="fetch candles from an exchange (resumes after the last stored bar)")
    fetch.add_argument("--exchange", required=True, help="the exchange's ccxt id, e.g. binance")
    fetch.add_argument("--symbol", required=True, help="the exchange's symbol, e.g. BTC/USDT (stored as BTCUSDT)")
    fetch.add_argument("--timeframe", required=True, help=" ".join(TIMEFRAMES))
    fetch.add_argument("--since", type=_when, help="first open time, UTC unless it says (needed for a first fetch)")
    fetch.add_argument("--until", type=_when, help="stop before this open time (default: the last closed bar)")
    fetch.add_argument("--as", dest="store_as", type=_symbol, help="trad's symbol to store them under")
    fetch.add_argument("--batch-bars", type=_positive(1_000_000), default=10_000, help="bars per transaction")
    fetch.set_defaults(func=cmd_candles_fetch)
    candles.set_defaults(func=cmd_candles)

    jobs = sub.add_parser("jobs", help="look at, cancel and retry jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    jl = jsub.add_parser("list")
    jl.add_argument("--status", choices=list(JobStatus))
    jl.add_argument("--limit", type=_positive(1000), default=20)
    for action in ("show", "cancel", "retry"):
        jsub.add_parser(action).add_argument("job_id", type=_job_id)
    jobs.set_defaults(func=cmd_jobs)
    jf = jsub.add_parser("follow", help="live progress until the job ends; exit status is its outcome")
    jf.add_argument("job_id", type=_job_id)
    jf.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    jf.set_defaults(func=cmd_follow)

    schedules = sub.add_parser("schedules", help="look at, pause and resume schedules")
    ssub = schedules.add_subparsers(dest="action", required=True)
    ssub.add_parser("list")
    for action in ("show", "pause", "resume"):
        ssub.add_parser(action).add_argument("schedule", help="id or name")
    schedules.set_defaults(func=cmd_schedules)

    strategies = sub.add_parser("strategies", help="the installed strategies")
    stsub = strategies.add_subparsers(dest="action", required=True)
    stsub.add_parser("list", help="name, package, version, warm-up and parameters of each")
    strategies.set_defaults(func=cmd_strategies)
    check = stsub.add_parser(
        "check",
        help="run the look-ahead and warm-up bias checks on stored candles (exit 0 passed, 1 bias found, 2 bad input)",
    )
    check.add_argument("name", help="the strategy's name")
    check.add_argument("--symbol", type=_symbol, required=True)
    check.add_argument("--timeframe", choices=TIMEFRAMES, required=True)
    check.add_argument("--start", type=_when, help="first open time, UTC unless it says (default: the first stored)")
    check.add_argument("--end", type=_when, help="stop before this open time (default: after the last stored)")
    check.add_argument(
        "--params", type=_params_json, help="a JSON object of parameters (default: the defaults and two drawn)"
    )
    check.add_argument("--seed", type=int, default=1, help="picks the bars tried and the parameters drawn")
    check.set_defaults(func=cmd_strategies_check)

    maint = sub.add_parser("maintenance", help="reaper, reconciler and schedules")
    maint.add_argument("action", choices=["run-once"])
    maint.set_defaults(func=cmd_maintenance)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, get_settings())
    except CliError as exc:
        print(f"trad: error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"trad: error: PostgreSQL is unreachable ({exc.orig or exc}); check DATABASE_URL", file=sys.stderr)
        return 3
    except RedisError as exc:
        print(f"trad: error: Redis is unreachable ({exc}); check REDIS_URL", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
