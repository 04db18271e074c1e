"""GET /api/v2/training/catalog: every value list a client may offer, each equal to its one
source in the code, behind the token like the rest of the API."""

from __future__ import annotations

from app.api.schemas import ScheduleCreate, StartTraining
from app.engine.pipeline import VALIDATION_MODES
from app.engine.registry import BUILTIN_PACKAGE
from app.engine.strategies import STRATEGIES
from app.status import FireOutcome, JobStatus, MisfirePolicy, OverlapPolicy, Priority
from app.training.catalog import OBJECTIVES, TIMEFRAMES, strategies, strategy_names

URL = "/api/v2/training/catalog"


def test_catalog_lists_each_value_set_from_its_source(client):
    response = client.get(URL)
    assert response.status_code == 200
    catalog = response.json()
    assert [s["name"] for s in catalog["strategies"]] == list(strategy_names())
    for strategy in catalog["strategies"]:
        installed = strategies()[strategy["name"]]
        assert strategy["package"] == installed.package and strategy["version"] == installed.version
        assert strategy["params"] == [
            {
                "name": p.name,
                "kind": p.kind,
                "low": p.low,
                "high": p.high,
                "log": p.log,
                "choices": None,
                "default": p.default,
            }
            for p in installed.space
        ]
        assert strategy["defaults"] == installed.defaults
        assert strategy["warmup"] == installed.warmup(installed.defaults)
        assert strategy["max_warmup"] == installed.max_warmup
    assert catalog["timeframes"] == list(TIMEFRAMES)
    assert catalog["objectives"] == list(OBJECTIVES)
    assert catalog["validation_modes"] == list(VALIDATION_MODES)
    assert catalog["priorities"] == ["high", "normal", "low"] == list(Priority)  # highest first
    assert catalog["job_statuses"] == [
        {"value": s.value, "finished": s.is_finished, "cancelable": s.is_cancelable, "retryable": s.is_retryable}
        for s in JobStatus
    ]
    assert catalog["misfire_policies"] == list(MisfirePolicy)
    assert catalog["overlap_policies"] == list(OverlapPolicy)
    assert catalog["fire_outcomes"] == list(FireOutcome)
    assert catalog["defaults"] == {
        "priority": StartTraining.model_fields["priority"].default,
        "objective": StartTraining.model_fields["objective"].default,
        "validation_mode": "holdout",
        "misfire_policy": ScheduleCreate.model_fields["misfire_policy"].default,
        "overlap_policy": ScheduleCreate.model_fields["overlap_policy"].default,
    }


def test_catalog_needs_the_token(anon_client):
    assert anon_client.get(URL).status_code == 401


def test_openapi_names_the_value_sets_as_enums(client):
    """Request and response schemas name the enums, so the document lists their values."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Priority"]["enum"] == list(Priority)
    assert schemas["MisfirePolicy"]["enum"] == list(MisfirePolicy)
    assert schemas["OverlapPolicy"]["enum"] == list(OverlapPolicy)
    assert schemas["FireOutcome"]["enum"] == list(FireOutcome)
    assert schemas["StartTraining"]["properties"]["priority"] == {
        "$ref": "#/components/schemas/Priority",
        "default": "normal",
    }
    assert schemas["ScheduleFireOut"]["properties"]["outcome"] == {"$ref": "#/components/schemas/FireOutcome"}
    assert "Catalog" in schemas


def test_strategies_lists_the_installed_ones_with_package_version_space_and_warmup(client):
    response = client.get("/api/v2/training/strategies")
    assert response.status_code == 200
    body = response.json()
    assert body["strategies"] == client.get(URL).json()["strategies"]  # the one source
    by_name = {s["name"]: s for s in body["strategies"]}
    assert set(STRATEGIES) <= set(by_name)  # trad's own, through the same entry points
    for name in STRATEGIES:
        assert by_name[name]["package"] == BUILTIN_PACKAGE
        assert by_name[name]["version"]
    sma = by_name["sma_crossover"]
    assert sma["defaults"] == {"fast": 10, "slow": 50} and sma["warmup"] == 50 and sma["max_warmup"] == 1000
    assert body["broken"] == []


def test_strategies_needs_the_token(client):
    assert client.get("/api/v2/training/strategies", headers={"Authorization": "Bearer nope"}).status_code == 401
