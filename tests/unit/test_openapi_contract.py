"""The OpenAPI document describes everything a client sends or reads: every operation, every
parameter and every property of every schema has a description (what it means, its unit, what
null means), and the rules that are not schemas are stated once, in info.description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from orchestrator.api.app import create_app

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Never started: reading the OpenAPI touches no database.
    app = create_app(Settings(database_url="sqlite://", data_dir=Path("/nonexistent")))
    return app.openapi()


def _undescribed(document: dict[str, Any]) -> list[str]:
    missing: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            label = f"{method.upper()} {path}"
            if not operation.get("description"):
                missing.append(f"operation {label}")
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    missing.append(f"parameter {label} {parameter['in']}.{parameter['name']}")
    for name, schema in document["components"]["schemas"].items():
        for prop, sub in schema.get("properties", {}).items():
            if not sub.get("description"):
                missing.append(f"property {name}.{prop}")
    return missing


def test_every_operation_parameter_and_property_is_described(document: dict[str, Any]) -> None:
    missing = _undescribed(document)
    assert not missing, f"{len(missing)} without a description:\n" + "\n".join(missing)


def test_the_walk_sees_what_it_checks(document: dict[str, Any]) -> None:
    # A walk that found nothing to check would pass anything.
    properties = sum(len(s.get("properties", {})) for s in document["components"]["schemas"].values())
    assert properties > 250 and len(document["paths"]) > 30


def test_the_input_rules_beyond_the_schemas_are_stated(document: dict[str, Any]) -> None:
    # The fuzz run does not send NUL characters because the document says, here, that they are refused.
    description = document["info"]["description"]
    assert "NUL" in description and "query parameter" in description


def test_the_rules_the_server_checks_are_in_the_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "pattern" in schemas["TemplateSpec"]["properties"]["version"]
    assert set(schemas["WorkItemTypeCreate"]["properties"]["lifecycle"]["enum"]) == {
        "canonical",
        "work",
        "backlog",
        "chat",
    }
    events = schemas["WebhookCreate"]["properties"]["events"]["items"]
    assert "*" in str(events) and "saga.completed" in str(events)
    assert [b["title"] for b in schemas["StepSpec"]["oneOf"]] == ["handler step", "work_item step"]
    update = schemas["WorkItemUpdate"]["properties"]
    # Fields that refuse null are not offered as nullable; those where null means something are.
    assert "anyOf" not in update["title"] and "null" in str(update["description"])
    listing = {p["name"]: p for p in document["paths"]["/api/v1/work-items"]["get"]["parameters"]}
    assert "pattern" in listing["assignee"]["schema"]
    patch = {p["name"]: p for p in document["paths"]["/api/v1/work-items/{item_id}"]["patch"]["parameters"]}
    assert "pattern" in patch["If-Match"]["schema"]


def test_the_batch_submit_is_documented_with_its_answer_and_errors(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/sagas/batch"]["post"]
    schemas = document["components"]["schemas"]
    answered = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answered == {"$ref": "#/components/schemas/SagaBatchRead"}
    for status in ("401", "403", "413", "422"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, status
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    sagas = schemas[body["$ref"].rsplit("/", 1)[1]]["properties"]["sagas"]
    assert (sagas["minItems"], sagas["maxItems"]) == (1, 1000) and "SagaCreate" in sagas["description"]
    result = schemas["SagaBatchResult"]["properties"]
    assert {"index", "status", "saga", "error"} <= set(result)
