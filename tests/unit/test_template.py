from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from models.keytemplate import KeyTemplateError, render
from models.template import semver_key
from orchestrator.errors import InvalidInput
from orchestrator.sagas.templates import parse_template

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop.order.yaml"


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "t",
        "version": "1.0.0",
        "steps": [{"name": "a", "capability": "cap", "handler": "h"}],
    }
    doc.update(overrides)
    return doc


def test_the_shop_template_is_valid() -> None:
    spec = parse_template(yaml.safe_load(SHOP.read_text()))
    assert [s.name for s in spec.steps] == ["reserve_stock", "charge_card", "ship"]
    assert spec.steps[0].compensate == "release_stock"


def test_a_step_without_capability_is_refused_with_its_path() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_template(_doc(steps=[{"name": "a", "handler": "h"}]))
    assert {"path": "steps.0.capability", "message": "Value error, a handler step needs a capability"} in (
        err.value.details
    )


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("version", "1.0", "version"),
        ("input_schema", {"type": "nonsense"}, "input_schema"),
        ("steps", [], "steps"),
        ("steps", [{"name": "a", "capability": "c", "handler": "h"}] * 2, "(root)"),
        (
            "steps",
            [{"name": "a", "capability": "c", "handler": "h", "mutex_scope": "{secret.x}"}],
            "steps.0.mutex_scope",
        ),
        (
            "steps",
            [{"name": "a", "capability": "c", "handler": "h", "retry": {"max_attempts": 0}}],
            "steps.0.retry.max_attempts",
        ),
        (
            "steps",
            [{"name": "a", "capability": "c", "handler": "h", "for_each": "{input.xs}", "mutex_scope": "m"}],
            "steps.0",
        ),
        ("steps", [{"name": "a", "capability": "c", "handler": "h", "for_each": "input.xs"}], "steps.0.for_each"),
        (
            "steps",
            [{"name": "a", "capability": "c", "handler": "h", "completion": {"policy": "any"}}],
            "steps.0",
        ),
        ("sla", {"target_ms": 0}, "sla.target_ms"),
    ],
)
def test_invalid_templates_name_the_failing_field(field: str, value: Any, path: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_template(_doc(**{field: value}))
    assert path in [d["path"] for d in err.value.details]


def test_input_errors_list_every_failing_path() -> None:
    spec = parse_template(yaml.safe_load(SHOP.read_text()))
    errors = spec.input_errors({"amount": "x", "extra": 1})
    paths = {e["path"] for e in errors}
    assert "input.amount" in paths and "input" in paths


def test_key_templates_render_from_the_saga() -> None:
    assert render("acct:{input.account.id}:{step}", {"input": {"account": {"id": 7}}, "step": "pay"}) == "acct:7:pay"
    with pytest.raises(KeyTemplateError):
        render("acct:{input.missing}", {"input": {}})


def test_semver_orders_prereleases_before_releases() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "1.2.0-alpha", "0.9.9"]
    assert sorted(versions, key=semver_key) == ["0.9.9", "1.2.0-alpha", "1.2.0-rc.1", "1.2.0", "1.10.0"]


def test_handlers_fan_out_with_a_completion_policy() -> None:
    spec = parse_template(
        _doc(
            steps=[
                {
                    "name": "a",
                    "capability": "c",
                    "handler": "h",
                    "for_each": "{input.xs}",
                    "completion": {"policy": "at_least", "k": 2},
                }
            ]
        )
    )
    assert spec.steps[0].completion.needed(5) == 2
