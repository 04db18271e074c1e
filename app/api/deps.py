"""Dependencies shared by the routes: settings, a database session, Redis, and the token.
The ones that never block are `async def`: FastAPI runs a plain `def` dependency in a thread."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy.orm import Session

from app.db import session_factory
from app.queue import redis_connection
from app.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


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
