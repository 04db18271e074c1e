"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app import cron, exchanges
from app.engine.errors import TrainingInputError
from app.engine.pipeline import SPEC_DEFAULTS
from app.kinds import KINDS
from app.services.candle_refresh import EXCHANGE_SYMBOL_PATTERN
from app.status import AttemptStatus, FireOutcome, JobStatus, MisfirePolicy, OverlapPolicy, Priority
from app.training.catalog import (
    MAX_COST_BPS,
    OBJECTIVES,
    SYMBOL_PATTERN,
    TIMEFRAMES,
    VALIDATION_MODES,
    strategies,
    strategy_names,
)

Timeframe = Literal[TIMEFRAMES]  # a tuple subscript: Literal of each of its values
Objective = Literal[OBJECTIVES]
ValidationMode = Literal[VALIDATION_MODES]
Status = JobStatus
Kind = Literal[tuple(KINDS)]
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_OFFSET = 2**31 - 1


def _number_not_text(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number, not a string or boolean")
    return value


# A JSON Schema integer: 3 and 3.0 are both integers, "3", true and 3.5 are not.
Integer = Annotated[int, BeforeValidator(_number_not_text)]
# The registered strategies, so that the OpenAPI document lists them as an enum.
StrategyName = StrEnum("StrategyName", {name: name for name in strategy_names()})


def _utc_in_range(value: datetime | None) -> datetime | None:
    """UTC, between 1970 and 9999 (the range candles are looked up in)."""
    if value is None:
        return None
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


def _finite_or_none(value: Any) -> Any:
    """Non-finite numbers become null, recursively: no API body carries NaN or ±inf."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FiniteFloat = Annotated[float | None, BeforeValidator(_finite_or_none)]
FiniteJson = Annotated[dict[str, Any], BeforeValidator(_finite_or_none)]
CostBps = Annotated[StrictFloat, Field(ge=0, le=MAX_COST_BPS, allow_inf_nan=False)]  # a cost per fill


class WalkForward(BaseModel):
    """How the search is validated: `holdout` (default) or `walk_forward` over `windows`
    rolling (or `anchored`) in-sample windows, each followed by its out-of-sample window."""

    model_config = ConfigDict(extra="forbid")

    mode: ValidationMode = SPEC_DEFAULTS["validation_mode"]
    windows: Integer = Field(SPEC_DEFAULTS["windows"], ge=2, le=20, description="walk-forward windows")
    anchored: StrictBool = Field(SPEC_DEFAULTS["anchored"], description="in-sample windows all start at the first bar")


class ParamNarrowed(BaseModel):
    """A number parameter's search kept to `low`..`high` (either may be left out: the space's)."""

    model_config = ConfigDict(extra="forbid")

    low: StrictInt | StrictFloat | None = None
    high: StrictInt | StrictFloat | None = None


class ParamChoices(BaseModel):
    """A categorical parameter's search kept to some of its choices."""

    model_config = ConfigDict(extra="forbid")

    choices: list[StrictInt | StrictFloat | StrictStr | StrictBool] = Field(min_length=1, max_length=100)


ParamGiven = StrictInt | StrictFloat | StrictStr | StrictBool | ParamNarrowed | ParamChoices


class StartTraining(BaseModel):
    """POST /api/v2/training/start. Unknown fields and wrong types (e.g. "10" for a number) are refused."""

    model_config = ConfigDict(extra="forbid")

    strategy: StrategyName = Field(description="a registered strategy")
    symbol: StrictStr = Field(pattern=SYMBOL_PATTERN, description="e.g. BTCUSDT")
    timeframe: Timeframe
    start: datetime | None = Field(None, description="first candle (inclusive); default: all data")
    end: datetime | None = Field(None, description="last candle (exclusive); default: all data")
    n_iterations: Integer = Field(50, ge=1, le=2000, description="optimisation trials")
    priority: Priority = Priority.NORMAL
    seed: Integer = Field(0, ge=0, le=2**31 - 1)
    objective: Objective = SPEC_DEFAULTS["objective"]
    holdout_fraction: StrictFloat = Field(SPEC_DEFAULTS["holdout_fraction"], ge=0.05, le=0.5, allow_inf_nan=False)
    folds: Integer = Field(
        SPEC_DEFAULTS["folds"], ge=0, le=10, description="consecutive slices of the holdout whose mean score decides"
    )
    min_trades: Annotated[int, Field(ge=1, le=100_000), BeforeValidator(_number_not_text)] | None = Field(
        None, description="minimum trades in the training window; default by timeframe"
    )
    validation: WalkForward = Field(default_factory=WalkForward)
    fee_bps: CostBps | None = Field(
        None, description="fee per fill in basis points of its notional (10 = 0.1 %); default DEFAULT_FEE_BPS (10)"
    )
    slippage_bps: CostBps | None = Field(
        None, description="slippage per fill in basis points of its notional; default DEFAULT_SLIPPAGE_BPS (2)"
    )
    params: dict[Annotated[str, Field(max_length=64)], ParamGiven] | None = Field(
        None,
        max_length=64,
        description="per parameter of the strategy's space (GET /strategies): a fixed value, a narrowed range "
        '{"low": …, "high": …} or, for a categorical one, {"choices": […]}; the search keeps to them',
    )

    @field_validator("params")
    @classmethod
    def _in_space(cls, value: dict[str, ParamGiven] | None, info: ValidationInfo) -> dict[str, ParamGiven] | None:
        """Each given parameter exists, is of its type, inside the space, and the constraint can
        hold: else 422 naming the parameter (the engine's own check, `Strategy.narrowed`)."""
        strategy = info.data.get("strategy")
        if value is None or strategy is None:  # a bad strategy has its own error
            return value
        try:
            strategies()[strategy.value].narrowed(_plain_params(value))
        except TrainingInputError as exc:  # InvalidParams, or the strategy's constraint raising
            raise ValueError(str(exc)) from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc_in_range(value)

    @model_validator(mode="after")
    def _range(self) -> StartTraining:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def job_params(self) -> dict[str, Any]:
        """The body as the job's parameters. Costs left out stay out (the start fills them in
        from the settings after hashing the request), so a body that names no costs hashes as
        it did before costs could be named, and replays an earlier Idempotency-Key."""
        return _without_unnamed(self.model_dump(mode="json", exclude={"priority"}))


UNHASHED_WHEN_UNNAMED = ("fee_bps", "slippage_bps", "params")  # fields added after the first release


def _plain_params(given: dict[str, Any]) -> dict[str, Any]:
    """The narrowed parameters as stored: a range without the bounds left out."""
    return {
        name: {k: v for k, v in (p.model_dump() if isinstance(p, BaseModel) else p).items() if v is not None}
        if isinstance(p, BaseModel | dict)
        else p
        for name, p in given.items()
    }


def _without_unnamed(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as stored: ones added later left out when unnamed (so an older body hashes as
    it did), the narrowed parameters plain."""
    fields = {k: v for k, v in fields.items() if not (k in UNHASHED_WHEN_UNNAMED and v is None)}
    if fields.get("params") is not None:
        fields["params"] = _plain_params(fields["params"])
    return fields


class ErrorInfo(BaseModel):
    type: str | None
    message: str | None


class Progress(BaseModel):
    job_id: uuid.UUID
    kind: str
    status: Status
    phase: str | None
    percent: float
    message: str | None
    iteration: int | None
    n_iterations: int | None
    best_score: FiniteFloat
    eta_seconds: FiniteFloat
    attempts: int = Field(description="runs of this job so far, each start counted, preempted ones included")
    counted_attempts: int = Field(
        description="runs that used up the retry budget (failed or lost); preempted runs do not count"
    )
    max_attempts: int = Field(description="the job fails once counted_attempts reaches this")
    resumed_from_iteration: int | None
    cancel_requested: bool
    not_before: datetime | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    error: ErrorInfo | None
    configuration_id: uuid.UUID | None


class StartAccepted(Progress):
    progress_url: str


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    status: AttemptStatus
    worker_name: str | None
    start_iteration: int
    error_type: str | None
    error_message: str | None
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None


class JobSummary(Progress):
    """A job in the list: its progress plus what it trains and how long it ran."""

    strategy: str | None = Field(description="training jobs: the strategy; null for other kinds")
    symbol: str | None
    timeframe: str | None
    duration_s: FiniteFloat = Field(description="started → finished (or now while running); null if never started")


class JobDetail(Progress):
    priority: Priority
    params: dict[str, Any]
    attempt_history: list[AttemptOut]
    param_importances: dict[str, FiniteFloat] | None = Field(
        description="the saved configuration's parameter importances (sum ≈ 1); null without a configuration"
    )


class JobPage(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class WorkerInfo(BaseModel):
    name: str
    host: str | None = Field(description="the host the worker runs on, as RQ records it")
    state: str | None = Field(description="RQ's view: idle, busy, suspended…")
    job_id: uuid.UUID | None = Field(description="the job whose attempt this worker runs now (from PostgreSQL)")
    attempt: int | None


class QueueInfo(BaseModel):
    depth: dict[str, int] = Field(description="dispatches waiting in Redis per priority")
    queued: int = Field(description="jobs queued in PostgreSQL (the truth)")
    running: int
    failed: int
    workers: int
    worker_list: list[WorkerInfo] = Field(description="registered workers and the job each is running")
    redis_ok: bool


class Configuration(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    job_id: uuid.UUID
    strategy: str
    strategy_package: str | None = Field(None, description="the strategy's distribution; null: saved before kept")
    strategy_version: str | None = Field(None, description="that distribution's version; versions never mix")
    symbol: str
    timeframe: str
    params: FiniteJson
    objective: str
    score: FiniteFloat
    train_metrics: FiniteJson
    validation_metrics: FiniteJson
    overfit: bool
    overfit_reason: str | None
    data_start: datetime | None
    data_end: datetime | None
    seed: int
    code_version: str
    created_at: datetime


class Statistics(BaseModel):
    n_trials: int = 0
    deflated_sharpe: FiniteFloat = None
    pbo: FiniteFloat = None
    walk_forward_efficiency: FiniteFloat = None
    verdict: str = ""
    overfit: bool = False
    reason: str | None = None
    kind: Literal["no_edge", "does_not_survive", "worth_a_closer_look"] | None = Field(
        None,
        description="no_edge: no edge even in training; does_not_survive: an edge in training that does not "
        "survive out of sample or the statistics of the search; worth_a_closer_look: it survives them "
        "(null for configurations saved before verdicts had kinds)",
    )
    n_feasible: int | None = Field(None, description="trials that were eligible (enough trades, defined score)")


class LookaheadTried(BaseModel):
    bars_tried: list[int] = Field(
        description="the bars t (indices in the job's data) after which the bars were replaced"
    )
    times_tried: list[str] = Field(description="their open times, UTC")


class WarmupTried(BaseModel):
    declared: int = Field(description="the strategy's declared warm-up for these parameters, in bars")
    history_lengths: list[int] = Field(description="bars of history put in front of the ranges compared")
    ranges: list[list[int]] = Field(description="[first, end) bars whose positions were compared")
    skipped: str | None = Field(None, description="why nothing could be compared (too few bars), else null")


class BiasChecks(BaseModel):
    """The look-ahead and warm-up checks the chosen parameters passed (docs/backtesting.md#bias-checks)."""

    passed: bool
    params_checked: int = Field(description="parameter sets checked: 1, or one per walk-forward window")
    lookahead: LookaheadTried
    warmup: WarmupTried
    seconds: FiniteFloat = Field(None, description="time the checks took")


class ConfigurationDetail(Configuration):
    """A configuration with its evidence: curve against buy-and-hold, out-of-sample trades,
    walk-forward windows and the statistics of the search (see docs/results.md)."""

    details: FiniteJson
    validation_mode: ValidationMode = "holdout"
    min_trades: int | None = None
    equity_curve: FiniteJson = Field(default_factory=dict)
    validation_start: int | None = None
    windows: list[FiniteJson] = Field(default_factory=list)
    trades: list[FiniteJson] = Field(default_factory=list)
    benchmark_metrics: FiniteJson = Field(default_factory=dict)
    excess: FiniteJson = Field(default_factory=dict)
    statistics: Statistics | None = None
    param_importances: FiniteJson = Field(default_factory=dict)
    fee_bps: FiniteFloat = Field(None, description="the fee per fill it was trained and validated with, in bps")
    slippage_bps: FiniteFloat = Field(None, description="the slippage per fill it was trained with, in bps")
    bias_checks: BiasChecks | None = Field(
        None, description="the look-ahead and warm-up checks it passed (null for configurations saved before them)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_details(cls, value: Any) -> Any:
        """Lift the stored result fields out of the row's `details` JSON."""
        if isinstance(value, dict):
            return value
        details = dict(getattr(value, "details", None) or {})
        fields = {name: getattr(value, name) for name in Configuration.model_fields}
        lifted = {k: details[k] for k in RESULT_FIELDS if details.get(k) is not None}
        return {**fields, **lifted, "details": details}


class ConfigurationPage(BaseModel):
    items: list[Configuration]
    total: int
    limit: int
    offset: int


RESULT_FIELDS = (
    "validation_mode",
    "min_trades",
    "equity_curve",
    "validation_start",
    "windows",
    "trades",
    "benchmark_metrics",
    "excess",
    "statistics",
    "param_importances",
    "fee_bps",
    "slippage_bps",
    "bias_checks",
)


def _known_exchange(value: str) -> str:
    if value not in exchanges.exchange_ids():
        raise ValueError(f"unknown exchange {value!r}; ccxt's ids are lower case, e.g. binance")
    return value


ExchangeId = Annotated[StrictStr, Field(min_length=1, max_length=40, description="ccxt's id, e.g. binance")]
ExchangeSymbol = Annotated[
    StrictStr, Field(max_length=80, pattern=EXCHANGE_SYMBOL_PATTERN, description="the exchange's form, e.g. BTC/USDT")
]


class RefreshSource(BaseModel):
    """Where a schedule's refresh fetches its template's symbol and timeframe from."""

    model_config = ConfigDict(extra="forbid")

    exchange: ExchangeId
    symbol: ExchangeSymbol

    @field_validator("exchange")
    @classmethod
    def _known(cls, value: str) -> str:
        return _known_exchange(value)


def _refresh_object(value: Any) -> Any:
    if value is True:
        raise ValueError('name the exchange to fetch from, e.g. {"exchange": "binance", "symbol": "BTC/USDT"}')
    return value


class RefreshCandles(BaseModel):
    """POST /api/v2/candles/refresh. Unknown fields and wrong types are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exchange: ExchangeId
    symbol: ExchangeSymbol
    timeframe: Timeframe
    since: datetime | None = Field(None, description="first bar to fetch; default: after the last stored bar")
    until: datetime | None = Field(None, description="fetch bars opening before this; default: now")
    store_as: StrictStr | None = Field(
        None, alias="as", pattern=SYMBOL_PATTERN, description="trad's symbol; default: base and quote, e.g. BTCUSDT"
    )
    priority: Priority = Priority.NORMAL

    @field_validator("exchange")
    @classmethod
    def _known(cls, value: str) -> str:
        return _known_exchange(value)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc_in_range(value)


class CandleSeries(BaseModel):
    symbol: str
    timeframe: str
    first: datetime
    last: datetime
    bars: int
    sources: list[str] = Field(description="who stored them: an exchange's id, import or synthetic")
    last_refresh_at: datetime | None = Field(description="when a candles_refresh job last succeeded for them")


class CandleSeriesPage(BaseModel):
    items: list[CandleSeries]


class ScheduleTemplate(StartTraining):
    """The job a schedule starts: the body of POST /start, where `lookback` may replace a fixed
    `start`/`end` so each run trains on the latest candles (end = the fire time)."""

    lookback: StrictStr | None = Field(
        None, pattern=cron.LOOKBACK_PATTERN, description="e.g. 90d, 12h, 4w: the window ending at the fire time"
    )
    refresh: Annotated[RefreshSource | None, BeforeValidator(_refresh_object)] = Field(
        None,
        description="fetch the symbol's candles from this exchange first; the training job starts only "
        "after that refresh succeeded, its end at the last bar fetched",
    )

    @model_validator(mode="after")
    def _one_window(self) -> ScheduleTemplate:
        if self.lookback and (self.start or self.end):
            raise ValueError("give either lookback or start/end, not both")
        return self

    def stored(self) -> tuple[dict[str, Any], str | None]:
        """(the template as stored: a start body with its priority, the lookback)."""
        fields = _without_unnamed(self.model_dump(mode="json", exclude={"lookback"}))
        if fields.get("refresh") is None:
            fields.pop("refresh", None)
        return fields, self.lookback


class ScheduleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(None, min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")
    cron: StrictStr = Field(None, max_length=120, description="5 fields, or 6 with seconds last; e.g. '0 2 * * *'")
    timezone: StrictStr = Field(None, max_length=64, description="IANA name, e.g. Europe/London")
    template: ScheduleTemplate = None
    misfire_policy: MisfirePolicy = None
    overlap_policy: OverlapPolicy = None
    paused: StrictBool = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return None if value is None else cron.check_expression(value)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str | None) -> str | None:
        return None if value is None else cron.check_timezone(value)

    def changes(self) -> dict[str, Any]:
        """The fields given, as the schedules service takes them."""
        fields = self.model_dump(exclude_unset=True, exclude={"template"})
        if self.template is not None:
            fields["template"], fields["lookback"] = self.template.stored()
        return fields


class ScheduleUpdate(ScheduleFields):
    """PATCH: any subset, none null; a template given replaces the template (and its lookback) whole."""


class ScheduleCreate(ScheduleFields):
    name: StrictStr = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")
    cron: StrictStr = Field(max_length=120, description="5 fields, or 6 with seconds last; e.g. '0 2 * * *'")
    timezone: StrictStr = Field("UTC", max_length=64, description="IANA name, e.g. Europe/London")
    template: ScheduleTemplate
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    paused: StrictBool = False

    def changes(self) -> dict[str, Any]:
        fields = self.model_dump(exclude={"template"})
        fields["template"], fields["lookback"] = self.template.stored()
        return fields


class ScheduleFireOut(BaseModel):
    fire_time: datetime
    outcome: FireOutcome
    message: str | None
    job_id: uuid.UUID | None
    job_status: Status | None
    refresh_job_id: uuid.UUID | None = Field(None, description="the candles refresh job this fire ran first")
    refresh_job_status: Status | None = None


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str
    cron: str
    timezone: str
    template: dict[str, Any]
    misfire_policy: MisfirePolicy
    overlap_policy: OverlapPolicy
    paused: bool
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleDetail(ScheduleOut):
    recent_fires: list[ScheduleFireOut] = Field(description="newest first, with the outcome of each job")


class SchedulePage(BaseModel):
    items: list[ScheduleOut]


ParamValue = StrictInt | StrictFloat | StrictStr | StrictBool


class ParamRange(BaseModel):
    name: str
    kind: Literal["int", "float", "categorical"]
    low: float | None = Field(None, description="int and float: the smallest value")
    high: float | None = Field(None, description="int and float: the largest value")
    log: bool = Field(False, description="float: searched on a log scale")
    choices: list[ParamValue] | None = Field(None, description="categorical: the values it may take")
    default: ParamValue


class StrategyInfo(BaseModel):
    name: StrategyName
    package: str = Field(description="the installed distribution that declares it (trad for the built-in ones)")
    version: str = Field(description="that distribution's version: a job and its configuration record it")
    params: list[ParamRange] = Field(description="the parameter space the search draws from")
    defaults: dict[str, ParamValue]
    warmup: int = Field(description="bars of history the defaults need before the first traded bar")
    max_warmup: int = Field(description="the longest warm-up anywhere in the space")


class BrokenStrategy(BaseModel):
    name: str
    reason: str = Field(description="why it is left out: an import error or a declaration that does not hold")


class StrategyList(BaseModel):
    strategies: list[StrategyInfo]
    broken: list[BrokenStrategy] = Field(description="installed strategies that failed to load; not usable")


class JobStatusInfo(BaseModel):
    value: Status
    finished: bool = Field(description="nothing more happens to the job unless a user retries it")
    cancelable: bool
    retryable: bool


class CatalogDefaults(BaseModel):
    priority: Priority
    objective: Objective
    validation_mode: ValidationMode
    misfire_policy: MisfirePolicy
    overlap_policy: OverlapPolicy


class Catalog(BaseModel):
    """Every value list a request may name or a response may hold, each from its one source; the
    dashboard fills its selects from it."""

    strategies: list[StrategyInfo]
    timeframes: list[Timeframe]
    objectives: list[Objective]
    validation_modes: list[ValidationMode]
    priorities: list[Priority] = Field(description="highest first: a worker drains the first queue before the next")
    job_statuses: list[JobStatusInfo]
    misfire_policies: list[MisfirePolicy]
    overlap_policies: list[OverlapPolicy]
    fire_outcomes: list[FireOutcome]
    defaults: CatalogDefaults = Field(description="what a start or schedule request that leaves the field out gets")
