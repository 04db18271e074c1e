"""Every error the API answers with, and the OpenAPI description of each.

- 4xx: what a request can cause, found by validation before any query (422 always has the
  shape of a validation error: a list naming the field), or by a service (`app.services.errors`: each kind's status is
  `SERVICE_STATUS`, written here only).
- 503: only when PostgreSQL cannot be reached (a connection failure or no free connection).
  A database error a request causes is never reported as an outage.
- 500: anything unexpected, logged with the request id that the answer carries.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as Message_

from app.loop_pool import LoopPoolTimeout
from app.services.errors import Conflict, InvalidRequest, NotFound, QueueFull, ServiceError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# SQLSTATE classes of a server that cannot be reached or is going away: connection exceptions,
# operator intervention (shutdown, "cannot connect now"), insufficient resources.
_OUTAGE_SQLSTATES = ("08", "57P", "53")


class Message(BaseModel):
    detail: str


class InternalError(BaseModel):
    detail: str
    request_id: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationFailed(BaseModel):
    detail: list[FieldError]


SERVICE_STATUS: dict[type[ServiceError], int] = {NotFound: 404, Conflict: 409, InvalidRequest: 422, QueueFull: 429}

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}


RESPONSES: dict[int, dict[str, Any]] = {
    400: {"model": Message, "description": "the body could not be read (e.g. not UTF-8)"},
    401: {"model": Message, "description": "missing or invalid bearer token"},
    404: {"model": Message, "description": "no such resource"},
    409: {"model": Message, "description": "conflicts with the resource's state"},
    413: {"model": Message, "description": "request body too large"},
    422: {"model": ValidationFailed, "description": "invalid input; `loc` names the field"},
    429: {"model": Message, "description": "the queue is full", "headers": RETRY_AFTER},
    500: {"model": InternalError, "description": "unexpected error, logged under `request_id`"},
    503: {"model": Message, "description": "PostgreSQL unavailable", "headers": RETRY_AFTER},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that can answer with these error codes."""
    return {code: RESPONSES[code] for code in codes}


def is_outage(exc: SQLAlchemyError | psycopg.Error | LoopPoolTimeout) -> bool:
    """PostgreSQL could not be reached, as opposed to an error in what was asked of it. The
    driver's errors come wrapped by SQLAlchemy, or bare from the event-loop reads."""
    if isinstance(exc, PoolTimeout | DisconnectionError | LoopPoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is None:  # the driver's own error: the connection failed before any answer
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return exc.sqlstate.startswith(_OUTAGE_SQLSTATES)


def _safe(value: Any) -> Any:
    """JSON-encodable and UTF-8-encodable: lone surrogates escaped, NaN/Infinity as text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as `FieldError`s: the offending input is not echoed back (it may not
    even be encodable), and messages are made safe to encode."""
    return [
        {"loc": [_safe(part) for part in e.get("loc", ())], "msg": _safe(str(e.get("msg", ""))), "type": e["type"]}
        for e in errors
    ]


class RequestId:
    """Give every request an id (`request.state.request_id`) and answer with it in X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message_) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def install(app: FastAPI) -> None:
    """Exception handlers and the request id; call after adding the other middleware."""
    app.add_middleware(RequestId)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": field_errors(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": _safe(str(exc.detail))}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return service_answer(exc)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(psycopg.Error)
    @app.exception_handler(LoopPoolTimeout)
    async def database_error(request: Request, exc: SQLAlchemyError | psycopg.Error | LoopPoolTimeout) -> JSONResponse:
        if is_outage(exc):
            log.error("PostgreSQL unavailable on %s %s: %s", request.method, request.url.path, exc)
            return JSONResponse(
                {"detail": "PostgreSQL is unavailable; nothing was changed, try again shortly"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return _internal(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def service_answer(exc: ServiceError) -> JSONResponse:
    """The one HTTP answer of each service error: 422 with a field is shaped as a validation error."""
    if isinstance(exc, InvalidRequest) and exc.field is not None:
        error = {"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}
        return JSONResponse({"detail": [error]}, status_code=422)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFull) else None
    code = next(code for kind, code in SERVICE_STATUS.items() if isinstance(exc, kind))
    return JSONResponse({"detail": exc.message}, status_code=code, headers=headers)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    rid = _request_id(request)
    log.error(
        "unexpected error on %s %s (request %s)",
        request.method,
        request.url.path,
        rid,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"request_id": rid},
    )
    return JSONResponse(
        {"detail": "internal error; it was logged", "request_id": rid},
        status_code=500,
        headers={REQUEST_ID_HEADER: rid},
    )
