"""Schemathesis over the whole OpenAPI, every check, positive and negative data, as the admin and as
two tenants: no 5xx, every response as documented, no undocumented status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.specs.openapi import checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.fuzz.conftest import EXAMPLES, FULL, Identities, operations


@dataclass(frozen=True)
class Inexpressible:
    """A refusal of schema-valid input by a rule the OpenAPI cannot state, and why it cannot.

    A 422 whose message matches ``message`` is not counted against positive_data_acceptance
    (ST202) when each of its details, as "path: message", matches the ``detail`` of one such rule
    (or a matching rule has no ``detail``). Anything else the server refuses still is."""

    message: str
    reason: str
    detail: str | None = None


INEXPRESSIBLE = [
    Inexpressible(
        r"^cursor is not one this API returned$",
        "cursors are opaque: only a next_cursor the API returned is valid (the parameters say so in words)",
    ),
    Inexpressible(
        r"^unknown work-item type ",
        "work-item types are a runtime registry (operators register them): no enum can list them",
    ),
    Inexpressible(
        r"^not a valid [a-z][a-z0-9_.-]*: ",
        "an item must satisfy its type's JSON Schema, which is registered at run time",
    ),
    Inexpressible(
        r"^the Idempotency-Key header and idempotence_key in the body differ$",
        "a rule across two locations (a header and the body); OpenAPI describes each on its own",
    ),
    Inexpressible(
        r"^webhook target not allowed: ",
        "webhook URLs to loopback, private or metadata hosts are refused unless the operator allows them:"
        " a classification of addresses and a server setting",
    ),
    Inexpressible(
        r"^template is not valid: ",
        "a template's work items must name registered types whose schemas they meet, escalate to groups"
        " that principals are in (both runtime registries), and open in the caller's token's tenant",
        detail=r"^(steps\.\d+\.(compensate_)?work_item\.|sla: escalates to group )",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "a template's input_schema must be a JSON Schema workyard can run (valid by the 2020-12 meta-schema,"
        " local $refs only, RE2 patterns): no schema in the OpenAPI can say that without fetching one",
        detail=r"^body\.input_schema: Value error, ",
    ),
    Inexpressible(
        r"^schema is not a valid JSON Schema for workyard: ",
        "the same for a work-item type's schema",
    ),
    Inexpressible(
        r"^this token works across tenants; name the item's tenant$",
        "an all-tenant token must name the item's tenant, a tenant's token need not: it depends on the token",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "a retry policy's max_ms must be at least its initial_ms: JSON Schema cannot compare two fields",
        detail=r"^body\.steps\.\d+\.(compensate_)?retry: Value error, max_ms must be at least initial_ms$",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "a work-item step's placeholders ({input.x}, ...) must start with a known root wherever they sit,"
        " in its free-form payload too, which no pattern reaches",
        detail=r"^body\.steps\.\d+\.(compensate_)?work_item: Value error, placeholder \{.*\} must start with one of ",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "an SLA's (and a stall ladder's) escalation steps are listed in order of after_ms: JSON Schema cannot "
        "compare items",
        detail=r"(^|\.)(sla|stall): Value error, escalation steps must be in order of after_ms$",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "step names are unique within a template: JSON Schema's uniqueItems compares whole items, not a key",
        detail=r"^body: Value error, step name .* is used twice$",
    ),
    Inexpressible(
        r"^the rule offers items to group\(s\) no principal is in: ",
        "a routing rule's escalation and fallback offer items to groups some principal is in: the tokens are a"
        " runtime registry",
    ),
    Inexpressible(
        r"^a tenant's rule matches only its own tenant's items",
        "a tenant's routing rule may match only its own tenant's items: it depends on the caller's token",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "a priority range's min may not exceed its max: JSON Schema cannot compare two fields",
        detail=r"^body\.match\.priority: Value error, priority\.min must not exceed priority\.max$",
    ),
    Inexpressible(
        r"^request is not valid: ",
        "an agent declares each capability once, with one proficiency: uniqueItems compares whole items, not a key",
        detail=r"^body(\.capabilities)?: Value error, a capability is declared twice$",
    ),
    Inexpressible(
        r"^to act, name the count a dry run answered in expect ",
        "a bulk control that acts (dry_run false) names the count it expects: a rule across two fields that"
        " OpenAPI's schemas cannot state (expect is required only when dry_run is false)",
    ),
    Inexpressible(
        r"^risk_level \w+ is below its type's ",
        "an item may raise its type's risk level, never lower it: the type's is in a runtime registry",
    ),
    Inexpressible(
        r"^the template is not valid: ",
        "a work-item template names a registered type, templates it extends or includes, parameters for its"
        " placeholders, and an item its type's JSON Schema accepts: runtime registries and cross-field rules",
    ),
    Inexpressible(
        r"^no work-item template named |^template .* has no version ",
        "the templates a work-item template extends or includes are a runtime registry",
    ),
    Inexpressible(
        r"^type '.*': extends ",
        "a template that extends another keeps its type: the other's is in a runtime registry",
    ),
    Inexpressible(
        r"^the template's parameters are wrong: ",
        "an instantiation's parameters are declared by the template it names, registered at run time",
    ),
    Inexpressible(
        r"^template .* made an invalid item: ",
        "an instantiated item must satisfy its type's JSON Schema, which is registered at run time",
    ),
    Inexpressible(
        r"^a policy's checks need unique ids ",
        "a policy's checks are unique by id (default: the kind): uniqueItems compares whole items, not a key",
    ),
    Inexpressible(
        r"^(an artifact is inline content or an external uri|artifact \d+: the declared sha256 is not the "
        r"content's|artifact \d+ is external: declare its sha256|artifact ids must be unique)",
        "an artifact's declared digest must be the SHA-256 of its content (no schema computes a hash), and it"
        " is content or a uri with a digest, with ids unique by key",
    ),
    Inexpressible(
        r"^(no policy |policy .* has no check|evidence naming checks needs a policy|workItemId .* is not the "
        r"item of the path|no evidence .* on |the policy has \d+ approval step|no approval step of the policy "
        r"has role|the item's gate has no approval steps)",
        "evidence, approvals and validator runs name the item's policy, its checks and steps, and evidence"
        " already written: runtime registries, and the item of the path",
    ),
]


def accepts_positive_data(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Schemathesis's ST202, less the refusals listed in INEXPRESSIBLE."""
    if response.status_code == 422:
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        if _inexpressible(error):
            return None
    return checks.positive_data_acceptance(ctx, response, case)


def _inexpressible(error: dict[str, Any]) -> bool:
    rules = [rule for rule in INEXPRESSIBLE if re.search(rule.message, str(error.get("message", "")))]
    if any(rule.detail is None for rule in rules):
        return True
    details = [f"{d.get('path')}: {d.get('message')}" for d in error.get("details") or []]
    patterns = [rule.detail for rule in rules if rule.detail is not None]
    return bool(details and patterns) and all(any(re.search(p, d) for p in patterns) for d in details)


EXCLUDED: list[CheckFunction] = [checks.positive_data_acceptance]
ADDED: list[CheckFunction] = [accepts_positive_data]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", operations())
def test_operation(label: str, mode: GenerationMode, fuzz_schema: OpenApiSchema, identities: Identities) -> None:
    method, path = label.split(" ", 1)
    operation = fuzz_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(sorted(identities.headers)))
    @settings(
        max_examples=EXAMPLES,
        derandomize=not FULL,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any], who: str) -> None:
        # A query value made a list of no or one element is sent as no parameter or as one value:
        # the request is then the valid one it was made from, which no check can hold against the
        # server. (Two or more are sent as a repeated parameter, which the API refuses.)
        assume(not any(isinstance(value, list) and len(value) < 2 for value in (case.query or {}).values()))
        case.call_and_validate(headers=identities.headers[who], excluded_checks=EXCLUDED, additional_checks=ADDED)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("nothing of this operation can be made invalid")
        raise


@pytest.mark.parametrize("who", ["admin", "acme"])
def test_stateful(who: str, fuzz_schema: OpenApiSchema, identities: Identities) -> None:
    """Sequences of calls along the links schemathesis infers (a saga's id from POST /sagas into
    GET /sagas/{saga_id}, ...), with every check on each response."""
    headers = identities.headers[who]

    class Workflow(fuzz_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Case[Any], **kwargs: Any) -> None:
            case.validate_response(
                response,
                headers=headers,
                excluded_checks=EXCLUDED,
                additional_checks=ADDED,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,  # what the stateful checks (use after free, ...) look back on
            )

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=10,
            derandomize=not FULL,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
