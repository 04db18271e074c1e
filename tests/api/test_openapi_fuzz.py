"""The OpenAPI document describes the API: a property-based fuzzer (schemathesis) generates
requests from `/openapi.json` and sends them to the real API process over HTTP, against the
suite's PostgreSQL and Redis. Fixed seed, bounded examples: the same requests every run.

Checked on every response: no server error, a status code and a body the document lists for
that route, documented headers (Retry-After), and that schema-valid requests are not refused.
Schema-invalid requests (negative mode) must be refused with a documented 4xx. The one refusal
of schema-valid input the document cannot express is data-dependent: a 422 from /start naming
a candle-coverage or date-range problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.api.app import create_app
from app.db import session_factory
from app.settings import Settings
from tests.support import TOKEN, add_candles_1h, api_process, reset

START = ("POST", "/api/v2/training/start")
SCHEDULES = "/api/v2/training/schedules"
# What a schedule's document cannot express: a cron expression or IANA name that parses, and a
# template's cross-field rules (lookback or start/end, end after start).
SCHEDULE_RULES = ("cron", "timezone", "template", "lookback", "start", "end")
EXAMPLES = 25


def negates_only_the_token(case) -> bool:
    """A negative case whose only named mutation is the Authorization header: the test sends a
    valid token in its place, so what reaches the API is valid (401s are tested elsewhere)."""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    mutations = getattr(data, "mutations", None) or []
    names = {getattr(m, "parameter", None) for m in mutations} | {getattr(data, "parameter", None)}
    names.discard(None)
    return bool(names) and {name.lower() for name in names} == {"authorization"}


def cases() -> list:
    """(method, path, mode) for every documented operation; invalid input only where it has any."""
    document = create_app(Settings(database_url="postgresql://-/-", redis_url="redis://-", api_token="-")).openapi()
    found = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            found.append(pytest.param(method.upper(), path, GenerationMode.POSITIVE, id=f"{method.upper()} {path}"))
            if op.get("parameters") or op.get("requestBody"):
                found.append(
                    pytest.param(method.upper(), path, GenerationMode.NEGATIVE, id=f"{method.upper()} {path} invalid")
                )
    return found


@pytest.fixture(scope="module")
def fuzzed_api(settings: Settings) -> Iterator[str]:
    reset(settings)
    with session_factory(settings.database_url)() as session:
        add_candles_1h(session)
    with api_process(settings) as url:
        yield url


@pytest.mark.parametrize(("method", "path", "mode"), cases())
def test_the_api_keeps_to_its_openapi_document(fuzzed_api, method, path, mode):
    operation = schemathesis.openapi.from_url(f"{fuzzed_api}/openapi.json")[path][method]
    headers = {"Authorization": f"Bearer {TOKEN}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case):
        token_only = mode == GenerationMode.NEGATIVE and negates_only_the_token(case)
        excluded = [negative_data_rejection] if token_only else []
        if path.startswith(SCHEDULES) and method in ("POST", "PATCH") and mode == GenerationMode.POSITIVE:
            response = case.call_and_validate(
                headers=headers, timeout=15, excluded_checks=[positive_data_acceptance, *excluded]
            )
            if response.status_code == 422:
                for error in response.json()["detail"]:
                    assert set(error["loc"]) & set(SCHEDULE_RULES), error
            return
        if (method, path) != START:
            case.call_and_validate(headers=headers, timeout=15, excluded_checks=excluded)
            return
        response = case.call_and_validate(
            headers=headers, timeout=15, excluded_checks=[positive_data_acceptance, *excluded]
        )
        if mode == GenerationMode.POSITIVE and response.status_code == 422:
            for error in response.json()["detail"]:
                # Beyond the schema: the candles, and `params` against the strategy's space.
                assert error["loc"][-1] in ("symbol", "timeframe", "start", "end", "body", "params"), error
                words = ("candles", "bars", "after start", "between", "parameter")
                assert any(word in error["msg"] for word in words), error

    check()
