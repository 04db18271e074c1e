"""/api/v2/training/configurations: the saved results of training jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.api.errors import responses
from app.api.schemas import MAX_OFFSET, Configuration, ConfigurationDetail, ConfigurationPage
from app.repositories import configurations as repo
from app.services.errors import NotFound
from app.training.catalog import SYMBOL_PATTERN

router = APIRouter(
    prefix="/api/v2/training/configurations", tags=["configurations"], responses=responses(401, 422, 500, 503)
)
Symbol = Annotated[str | None, Query(pattern=SYMBOL_PATTERN)]
StrategyName = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,64}$")]
StrategyVersion = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9.+!_-]{1,64}$",
        description="the strategy package's version; default: each strategy's newest (its latest configuration's)",
    ),
]


@router.get("", response_model=ConfigurationPage)
def list_configurations(
    session: SessionDep,
    symbol: Symbol = None,
    strategy: StrategyName = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ConfigurationPage:
    rows, total = repo.list_configurations(session, symbol=symbol, strategy=strategy, limit=limit, offset=offset)
    return ConfigurationPage(
        items=[Configuration.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/best", response_model=ConfigurationDetail, responses=responses(404))
def best_configuration(
    session: SessionDep,
    symbol: Annotated[str, Query(pattern=SYMBOL_PATTERN)],
    strategy: StrategyName = None,
    version: StrategyVersion = None,
) -> ConfigurationDetail:
    """The best configuration for the symbol (and strategy), within one version of each strategy:
    `version`, or the version of the strategy's most recent configuration. Versions never mix."""
    row = repo.best(session, symbol=symbol, strategy=strategy, version=version)
    if row is None:
        which = "".join(f" and {v}" for v in (strategy, version) if v)
        raise NotFound(f"no configuration for {symbol}{which}")
    return ConfigurationDetail.model_validate(row)


@router.get("/{config_id}", response_model=ConfigurationDetail, responses=responses(404))
def get_configuration(config_id: uuid.UUID, session: SessionDep) -> ConfigurationDetail:
    row = repo.get(session, config_id)
    if row is None:
        raise NotFound(f"no configuration with id {config_id}")
    return ConfigurationDetail.model_validate(row)
