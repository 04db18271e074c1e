"""/api/v2/training/catalog: the value lists a request may name, for clients that offer choices
(the dashboard's selects), so that none of them keeps a copy; /api/v2/training/strategies: the
installed strategies (the registry's), with their packages, versions, spaces and warm-ups."""

from __future__ import annotations

from functools import lru_cache
from typing import get_args

from fastapi import APIRouter

from app.api.errors import responses
from app.api.schemas import (
    BrokenStrategy,
    Catalog,
    CatalogDefaults,
    JobStatusInfo,
    ScheduleCreate,
    StartTraining,
    StrategyInfo,
    StrategyList,
    ValidationMode,
    WalkForward,
)
from app.status import FireOutcome, JobStatus, MisfirePolicy, OverlapPolicy, Priority
from app.training.catalog import OBJECTIVES, TIMEFRAMES, broken_strategies, strategies

router = APIRouter(prefix="/api/v2/training", tags=["training"], responses=responses(401, 500))


def _strategies() -> list[StrategyInfo]:
    return [StrategyInfo.model_validate(s.describe()) for s in strategies().values()]


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    start, schedule = StartTraining.model_fields, ScheduleCreate.model_fields
    return Catalog(
        strategies=_strategies(),
        timeframes=list(TIMEFRAMES),
        objectives=list(OBJECTIVES),
        validation_modes=list(get_args(ValidationMode)),
        priorities=list(Priority),
        job_statuses=[
            JobStatusInfo(value=s, finished=s.is_finished, cancelable=s.is_cancelable, retryable=s.is_retryable)
            for s in JobStatus
        ],
        misfire_policies=list(MisfirePolicy),
        overlap_policies=list(OverlapPolicy),
        fire_outcomes=list(FireOutcome),
        defaults=CatalogDefaults(
            priority=start["priority"].default,
            objective=start["objective"].default,
            validation_mode=WalkForward.model_fields["mode"].default,
            misfire_policy=schedule["misfire_policy"].default,
            overlap_policy=schedule["overlap_policy"].default,
        ),
    )


@router.get("/catalog", response_model=Catalog)
def get_catalog() -> Catalog:
    """Strategies with their parameter spaces, timeframes, objectives, validation modes,
    priorities, job statuses, schedule policies and fire outcomes, with the request defaults."""
    return catalog()


@router.get("/strategies", response_model=StrategyList)
def get_strategies() -> StrategyList:
    """The installed strategies, each with the package and version it comes from, its parameter
    space with defaults, and its warm-up; and those installed but broken, with the reason."""
    return StrategyList(
        strategies=catalog().strategies,
        broken=[BrokenStrategy(name=n, reason=why) for n, why in broken_strategies().items()],
    )
