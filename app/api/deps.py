"""Dependencies shared by the routes: settings, the API's state, a database session, Redis, and
the token. The ones that never block are `async def`: FastAPI runs a plain `def` dependency in a
thread."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy.orm import Session

from app.api.follow import FollowHub
from app.db import session_factory
from app.loop_pool import LoopPool
from app.queue import redis_connection
from app.services import dispatch
from app.services.candles import KeptChecks
from app.services.dispatch import LoopSender
from app.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


@dataclass(frozen=True)
class ApiState:
    """What the API process builds once at start-up and every request shares (`app.state.api`).
    The settings stay apart (`app.state.settings`, `SettingsDep`): they are the one thing a test
    may swap on a running app."""

    read_pool: LoopPool  # the event loop's reads (progress, the job list, the follow hub)
    start_pool: LoopPool  # the event loop's starts, apart so reads never wait behind them
    candle_checks: KeptChecks  # candle checks that passed, reused while the candles are unchanged
    start_sender: LoopSender  # sends the starts' dispatches, batched
    follow_hub: FollowHub  # the progress streams


async def get_state(request: Request) -> ApiState:
    return request.app.state.api


StateDep = Annotated[ApiState, Depends(get_state)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_factory(settings.database_url)() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@lru_cache(maxsize=4)
def _redis(url: str) -> Redis:
    """One client (and connection pool) per process, not a new connection per request."""
    return redis_connection(url)


async def get_redis(settings: SettingsDep) -> Redis:
    return _redis(settings.redis_url)


RedisDep = Annotated[Redis, Depends(get_redis)]


@dataclass(frozen=True)
class Commit:
    """How a route ends its write: `commit()` commits the request's session, then sends what
    its transitions recorded (`dispatch.commit_and_send`)."""

    session: Session
    redis: Redis
    settings: Settings

    def __call__(self) -> dispatch.Delivery:
        return dispatch.commit_and_send(self.session, self.redis, self.settings)


async def get_commit(session: SessionDep, redis: RedisDep, settings: SettingsDep) -> Commit:
    return Commit(session, redis, settings)


CommitDep = Annotated[Commit, Depends(get_commit)]

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected = settings.api_token_value
    given = credentials.credentials if credentials else ""
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token" if expected else "the server has no API token configured",
            headers={"WWW-Authenticate": "Bearer"},
        )
