"""GET /api/v2/training/catalog: every value list a client may offer, each equal to its one
source in the code, behind the token like the rest of the API."""

from __future__ import annotations

from app.api.schemas import ScheduleCreate, StartTraining
from app.engine.pipeline import VALIDATION_MODES
from app.engine.strategies import STRATEGIES
from app.status import FireOutcome, JobStatus, MisfirePolicy, OverlapPolicy, Priority
from app.training.catalog import OBJECTIVES, TIMEFRAMES, strategy_names

URL = "/api/v2/training/catalog"


def test_catalog_lists_each_value_set_from_its_source(client):
    response = client.get(URL)
    assert response.status_code == 200
    catalog = response.json()
    assert [s["name"] for s in catalog["strategies"]] == list(strategy_names())
    for strategy in catalog["strategies"]:
        space = STRATEGIES[strategy["name"]].space
        assert strategy["params"] == [{"name": p.name, "kind": p.kind, "low": p.low, "high": p.high} for p in space]
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
