"""Who may call what: every endpoint of the work-item API against four callers.

For each endpoint (one row of ``ROWS``; a guard test keeps the table equal to the app's routes):

* no token -> 401;
* a token of the right principal that carries every scope but the endpoint's -> 403;
* a token of the same principal, with the endpoint's scope, in another tenant -> 404 for an
  endpoint that addresses an existing item by id, with the very body a missing id gets (no
  existence leak); a collection answers as usual but shows none of the first tenant's items;
* a token of the principal with the endpoint's scope and nothing else -> the success status.

Refused calls write nothing: the row counts of every table and the item itself are the same
after them. Tokens, their revocation and the audit trail's actors are tested at the end.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from config.settings import Settings
from models.policies import ApprovalCreate, PolicyCreate
from models.principal import Principal, PrincipalType, Scope
from models.routing import RoutingRuleCreate
from models.work_tables import WorkItem
from orchestrator.api import (
    auth,
    goals,
    policies,
    policy_gates,
    queues,
    routing,
    traceability,
    work_item_runs,
    work_item_types,
    work_items,
)
from orchestrator.api.app import create_app
from orchestrator.routing import rules
from orchestrator.work import audit
from orchestrator.work.gates import approvals
from orchestrator.work.gates import policies as policy_registry
from orchestrator.work.gates.evaluate import gate_of
from orchestrator.work.gates.validations import dispatch
from orchestrator.work.tokens import create_token, revoke_token
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions, task

PREFIXES = (
    "/api/v1/work-items",
    "/api/v1/works",
    "/api/v1/queues",
    "/api/v1/work-item-types",
    "/api/v1/routing-rules",
    "/api/v1/policies",
    "/api/v1/goals",
    "/api/v1/traceability",
)
EVERY_SCOPE = frozenset(s.value for s in Scope if s is not Scope.admin)
# Shaped like a real id of the tenant the calls address, but never issued.
MISSING_ID = "WI-ACME-TASK-20990101-0000000000"


@dataclass
class Ctx:
    """What a row's ``prepare`` may use to put the database in the state its call needs."""

    client: TestClient
    setup: Headers  # user:pm in acme (read, write, claim): makes items
    claimer: Headers  # the row's principal in acme with work:claim only: takes claims for it
    seed: str  # an acme task assigned (and offered) to agent:a1, made before every row
    names: itertools.count[int] = field(default_factory=itertools.count)

    def item(self, **extra: Any) -> str:
        body = task(**{"offer": {"type": "agent"}, **extra})
        response = self.client.post("/api/v1/work-items", json=body, headers=self.setup)
        assert response.status_code == 201, response.json()
        return str(response.json()["id"])

    def claimed(self) -> tuple[str, int]:
        item_id = self.item()
        response = self.client.post(f"/api/v1/work-items/{item_id}/claim", headers=self.claimer)
        assert response.status_code == 200, response.json()
        return item_id, int(response.json()["lease_epoch"])

    def started(self) -> tuple[str, int]:
        item_id = self.item()
        response = self.client.post(f"/api/v1/work-items/{item_id}/start", headers=self.claimer)
        assert response.status_code == 200 and response.json()["status"] == "in_progress", response.json()
        return item_id, int(response.json()["lease_epoch"])


@dataclass(frozen=True)
class Call:
    path: str
    json: Any = None
    item_id: str | None = None  # the acme item (or routing rule) the path addresses, if it addresses one
    shows: str | None = None  # what the success response must contain (the positive control)


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # the route's path template, exactly as the app declares it
    scope: Scope
    success: int
    prepare: Callable[[Ctx], Call]
    # The other tenant's status, for an endpoint that does not address an item by id. None: it
    # does, and the other tenant gets the 404 of a missing item.
    other: int | None = None
    principal: str = "agent:a1"
    groups: tuple[str, ...] = ()
    # The tenant of the principal that succeeds ("*": an operator's all-tenant token).
    tenant: str = "acme"

    @property
    def name(self) -> str:
        return f"{self.method} {self.route}"


def _on_item(suffix: str = "", body: Any = None, shows: str | None = None) -> Callable[[Ctx], Call]:
    def prepare(ctx: Ctx) -> Call:
        item_id = ctx.item()
        return Call(f"/api/v1/work-items/{item_id}{suffix}", body, item_id, shows=shows or item_id)

    return prepare


def _on_claimed(suffix: str, body: Callable[[int], Any], shows: str) -> Callable[[Ctx], Call]:
    def prepare(ctx: Ctx) -> Call:
        item_id, epoch = ctx.claimed()
        return Call(f"/api/v1/work-items/{item_id}{suffix}", body(epoch), item_id, shows=shows)

    return prepare


def _complete(ctx: Ctx) -> Call:
    item_id, epoch = ctx.started()
    body = {"lease_epoch": epoch, "result": {"ok": True}}
    return Call(f"/api/v1/work-items/{item_id}/complete", body, item_id, shows='"status":"review"')


def _claimed_queue(ctx: Ctx) -> Call:
    item_id, _ = ctx.claimed()
    return Call("/api/v1/queues/claimed", shows=item_id)


def _group_queue(ctx: Ctx) -> Call:
    item_id = ctx.item(offer={"type": "human", "group": "ops"})
    return Call("/api/v1/queues/groups/ops", shows=item_id)


def _new_type(ctx: Ctx) -> Call:
    name = f"report-{next(ctx.names)}"
    schema = {"type": "object", "required": ["title"]}
    return Call("/api/v1/work-item-types", {"name": name, "schema": schema}, shows=name)


def _rule(ctx: Ctx, **body: Any) -> str:
    """An acme routing rule, registered as an acme operator would; its id."""
    name = f"rule-{next(ctx.names)}"
    registrar = Principal(PrincipalType.user, "op", "acme", frozenset({Scope.routing_write.value}))
    with sessions(ctx.client).begin() as session:
        rules.register(session, registrar, RoutingRuleCreate(id=name, **body))
    return name


def _new_rule(ctx: Ctx) -> Call:
    name = f"rule-{next(ctx.names)}"
    return Call("/api/v1/routing-rules", {"id": name, "match": {"types": ["task"]}}, shows=f'"id":"{name}"')


def _listed_rules(ctx: Ctx) -> Call:
    return Call("/api/v1/routing-rules", shows=_rule(ctx))


def _on_rule(ctx: Ctx) -> Call:
    name = _rule(ctx)
    return Call(f"/api/v1/routing-rules/{name}", item_id=name, shows='"versions":[')


def _routed_item(ctx: Ctx) -> Call:
    # A rule that matches the item: its creation is decided on (no agent fits: none is registered).
    label = f"routed-{next(ctx.names)}"
    _rule(ctx, match={"labels": [label]})
    item_id = ctx.item(labels=[label])
    return Call(f"/api/v1/work-items/{item_id}/routing", item_id=item_id, shows='"trigger":"created"')


def _policy(ctx: Ctx, **body: Any) -> str:
    """An acme policy, registered as acme's compliance officer would; its id."""
    name = f"policy-{next(ctx.names)}"
    registrar = Principal(PrincipalType.user, "co", "acme", frozenset({Scope.policies_write.value}))
    with sessions(ctx.client).begin() as session:
        policy_registry.register(session, registrar, PolicyCreate(id=name, **body))
    return name


def _new_policy(ctx: Ctx) -> Call:
    name = f"policy-{next(ctx.names)}"
    return Call("/api/v1/policies", {"id": name, "approvalSteps": [{"role": "lead"}]}, shows=f'"id":"{name}"')


def _listed_policies(ctx: Ctx) -> Call:
    return Call("/api/v1/policies", shows=_policy(ctx))


def _on_policy(ctx: Ctx) -> Call:
    name = _policy(ctx)
    return Call(f"/api/v1/policies/{name}", item_id=name, shows='"version":1')


def _hitl_item(ctx: Ctx) -> str:
    """An acme item with a human in the loop (as a routing rule puts it), under way: the gate to
    done needs a person."""
    item_id = ctx.item()
    with sessions(ctx.client).begin() as session:
        item = session.get_one(WorkItem, item_id)
        item.hitl = {"required": True, "gates": [], "rule_id": "r"}
        item.status = "in_progress"
    return item_id


def _approve(ctx: Ctx) -> Call:
    item_id = _hitl_item(ctx)
    body = {"decision": "approve", "justification": "looked at it"}
    return Call(f"/api/v1/work-items/{item_id}/approvals", body, item_id, shows='"decision":"approve"')


def _approvals(ctx: Ctx) -> Call:
    item_id = _hitl_item(ctx)
    approver = Principal(PrincipalType.user, "boss", "acme", frozenset({Scope.work_approve.value}))
    with sessions(ctx.client).begin() as session:
        body = ApprovalCreate(decision="approve", justification="fine")
        approvals.decide(session, approver, item_id, body)
    return Call(f"/api/v1/work-items/{item_id}/approvals", item_id=item_id, shows='"approver":"user:boss"')


def _gate(ctx: Ctx) -> Call:
    item_id = _hitl_item(ctx)
    return Call(f"/api/v1/work-items/{item_id}/gate", item_id=item_id, shows='"hitl":true')


EVIDENCE = {"id": "ev-1", "evidenceType": "attachment", "artifacts": [{"content": "minutes"}]}


def _evidence(ctx: Ctx) -> Call:
    item_id = ctx.item()
    return Call(f"/api/v1/work-items/{item_id}/evidence", EVIDENCE, item_id, shows='"evidenceType":"attachment"')


def _listed_evidence(ctx: Ctx) -> Call:
    item_id = ctx.item()
    written = ctx.client.post(f"/api/v1/work-items/{item_id}/evidence", json=EVIDENCE, headers=ctx.setup)
    assert written.status_code == 201, written.text
    return Call(f"/api/v1/work-items/{item_id}/evidence", item_id=item_id, shows='"id":"ev-1"')


UNDO_PLAN = {"steps": [{"action_id": "undo_it", "on": "any_failure", "target_step": "*"}]}


def _compensable(ctx: Ctx) -> str:
    """A done acme task whose plan names a handler a saga template of acme registers."""
    with sessions(ctx.client).begin() as session:
        author = create_token(
            session, principal_type=PrincipalType.user, principal_id="tpl", tenant="acme", scopes=["templates:write"]
        )
    template = {
        "name": "authz.undo",
        "version": "1.0.0",
        "steps": [{"name": "a", "capability": "c", "handler": "do_it", "compensate": "undo_it"}],
    }
    registered = ctx.client.post(
        "/api/v1/templates", json=template, headers={"Authorization": f"Bearer {author.secret}"}
    )
    assert registered.status_code in (200, 201), registered.text
    item_id = ctx.item(compensation=UNDO_PLAN)
    for status in ("in_progress", "done"):
        moved = ctx.client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": status}, headers=ctx.setup)
        assert moved.status_code == 200, moved.text
    return item_id


def _compensate(ctx: Ctx) -> Call:
    item_id = _compensable(ctx)
    return Call(f"/api/v1/work-items/{item_id}/compensate", {"reason": "undo"}, item_id, shows='"kind":"compensation"')


def _compensated(ctx: Ctx) -> tuple[str, str]:
    item_id = _compensable(ctx)
    started = ctx.client.post(f"/api/v1/work-items/{item_id}/compensate", json={}, headers=ctx.setup)
    assert started.status_code == 202, started.text
    return item_id, str(started.json()["runId"])


def _runs(ctx: Ctx) -> Call:
    item_id, run_id = _compensated(ctx)
    return Call(f"/api/v1/work-items/{item_id}/runs", item_id=item_id, shows=run_id)


def _run(ctx: Ctx) -> Call:
    item_id, run_id = _compensated(ctx)
    return Call(f"/api/v1/work-items/{item_id}/runs/{run_id}", item_id=item_id, shows=run_id)


def _validation(ctx: Ctx) -> tuple[str, str]:
    """An acme item whose policy has a validator, with a run of it pending (its dispatch left in
    the outbox: no broker here); the item's id and the run's."""
    validator = {"handler": "scan", "capability": "scanner"}
    policy = _policy(ctx, checks=[{"id": "scan", "kind": "security", "required": True, "validator": validator}])
    item_id = ctx.item(payload={"approvalPolicyId": policy})
    with sessions(ctx.client).begin() as session:
        gate = gate_of(session, session.get_one(WorkItem, item_id))
        assert gate is not None and gate.spec is not None
        run = dispatch(session, gate, gate.spec.checks[0], "user:pm")
        return item_id, run.id


def _validate(ctx: Ctx) -> Call:
    # The run is pending: asking again answers it (200) and dispatches nothing more.
    item_id, run = _validation(ctx)
    return Call(f"/api/v1/work-items/{item_id}/validations", {"check": "scan"}, item_id, shows=run)


def _validations(ctx: Ctx) -> Call:
    item_id, run = _validation(ctx)
    return Call(f"/api/v1/work-items/{item_id}/validations", item_id=item_id, shows=run)


def _goal(ctx: Ctx) -> str:
    """An acme goal, registered as acme's planner would; its code."""
    code = f"GOAL-AUTHZ-{next(ctx.names):03d}"
    made = ctx.client.post("/api/v1/goals", json={"code": code, "title": "a goal"}, headers=ctx.setup)
    assert made.status_code == 201, made.text
    return code


def _new_goal(ctx: Ctx) -> Call:
    code = f"GOAL-NEW-{next(ctx.names):03d}"
    return Call("/api/v1/goals", {"code": code, "title": "a goal"}, shows=f'"code":"{code}"')


def _listed_goals(ctx: Ctx) -> Call:
    return Call("/api/v1/goals", shows=_goal(ctx))


def _on_goal(ctx: Ctx) -> Call:
    code = _goal(ctx)
    return Call(f"/api/v1/goals/{code}", item_id=code, shows=f'"code":"{code}"')


def _retire_goal(ctx: Ctx) -> Call:
    code = _goal(ctx)
    return Call(f"/api/v1/goals/{code}", {"status": "retired"}, item_id=code, shows='"status":"retired"')


def _traceability_report(ctx: Ctx) -> Call:
    # An acme goal no item names: acme's report lists it, and another tenant's never does.
    return Call("/api/v1/traceability/validate", shows=_goal(ctx))


def _fixed(path: str, body: Any = None, shows: str | None = None) -> Callable[[Ctx], Call]:
    return lambda ctx: Call(path, body, shows=shows)


def _seeded(path: str) -> Callable[[Ctx], Call]:
    return lambda ctx: Call(path, shows=ctx.seed)


READ, WRITE, CLAIM, ROUTE = Scope.work_read, Scope.work_write, Scope.work_claim, Scope.routing_write
ITEM = "/api/v1/work-items/{item_id}"

# The matrix: one row per endpoint.
ROWS = [
    # /api/v1/work-items
    Row("POST", "/api/v1/work-items", WRITE, 201, _fixed("/api/v1/work-items", task()), other=201, principal="user:u1"),
    Row("GET", "/api/v1/work-items", READ, 200, _seeded("/api/v1/work-items"), other=200),
    Row("GET", ITEM, READ, 200, _on_item()),
    Row("PATCH", ITEM, WRITE, 200, _on_item(body={"title": "renamed"}, shows='"title":"renamed"'), principal="user:u1"),
    Row("DELETE", ITEM, WRITE, 204, _on_item(), principal="user:u1"),
    Row(
        "POST",
        ITEM + "/transition",
        WRITE,
        200,
        _on_item("/transition", {"to": "blocked"}, '"status":"blocked"'),
        principal="user:u1",
    ),
    Row(
        "GET",
        ITEM + "/transitions",
        READ,
        200,
        _on_item("/transitions", shows='"next":["in_progress","blocked","cancelled"]'),
    ),
    Row("GET", ITEM + "/history", READ, 200, _on_item("/history", shows='"action":"created","actor":"user:pm"')),
    Row("POST", ITEM + "/claim", CLAIM, 200, _on_item("/claim", {"ttl_s": 60}, '"claim":{"type":"agent","id":"a1"')),
    Row(
        "POST",
        ITEM + "/heartbeat",
        CLAIM,
        200,
        _on_claimed("/heartbeat", lambda e: {"lease_epoch": e}, '"lease_epoch":1'),
    ),
    Row("POST", ITEM + "/release", CLAIM, 200, _on_claimed("/release", lambda e: {"lease_epoch": e}, '"claim":null')),
    Row("POST", ITEM + "/start", CLAIM, 200, _on_item("/start", shows='"status":"in_progress"')),
    Row("POST", ITEM + "/complete", CLAIM, 200, _complete),
    Row(
        "POST",
        ITEM + "/fail",
        CLAIM,
        200,
        _on_claimed("/fail", lambda e: {"lease_epoch": e, "reason": "cannot"}, '"status":"cancelled"'),
    ),
    Row("GET", ITEM + "/routing", READ, 200, _routed_item),
    Row("POST", ITEM + "/reroute", ROUTE, 200, _on_item("/reroute", shows='"decision":null'), principal="user:u1"),
    # /api/v1/routing-rules: another tenant registers its own rules, lists only its own (and the
    # operators'), and finds none of acme's.
    Row("POST", "/api/v1/routing-rules", ROUTE, 201, _new_rule, other=201, principal="user:u1"),
    Row("GET", "/api/v1/routing-rules", READ, 200, _listed_rules, other=200),
    Row("GET", "/api/v1/routing-rules/{rule_id}", READ, 200, _on_rule),
    Row("DELETE", "/api/v1/routing-rules/{rule_id}", ROUTE, 204, _on_rule, principal="user:u1"),
    # policy gates: policies are a tenant's own (another registers and lists its own, finds none
    # of acme's); approvals, evidence and validations are the item's.
    Row("POST", "/api/v1/policies", Scope.policies_write, 201, _new_policy, other=201, principal="user:u1"),
    Row("GET", "/api/v1/policies", Scope.policies_read, 200, _listed_policies, other=200),
    Row("GET", "/api/v1/policies/{policy_id}", Scope.policies_read, 200, _on_policy),
    Row("DELETE", "/api/v1/policies/{policy_id}", Scope.policies_write, 204, _on_policy, principal="user:u1"),
    Row("POST", ITEM + "/approvals", Scope.work_approve, 201, _approve, principal="user:u1"),
    Row("GET", ITEM + "/approvals", READ, 200, _approvals),
    Row("GET", ITEM + "/gate", READ, 200, _gate),
    Row("POST", ITEM + "/evidence", WRITE, 201, _evidence, principal="user:u1"),
    Row("GET", ITEM + "/evidence", READ, 200, _listed_evidence),
    Row("POST", ITEM + "/validations", WRITE, 200, _validate, principal="user:u1"),
    Row("GET", ITEM + "/validations", READ, 200, _validations),
    Row("POST", ITEM + "/compensate", WRITE, 202, _compensate, principal="user:u1"),
    Row("GET", ITEM + "/runs", READ, 200, _runs),
    Row("GET", ITEM + "/runs/{run_id}", READ, 200, _run),
    # traceability: goals are a tenant's own (another registers and lists its own, finds none of
    # acme's); an item's trace is the item's; the validation covers the caller's tenant only.
    Row("POST", "/api/v1/goals", WRITE, 201, _new_goal, other=201, principal="user:u1"),
    Row("GET", "/api/v1/goals", READ, 200, _listed_goals, other=200),
    Row("GET", "/api/v1/goals/{code}", READ, 200, _on_goal),
    Row("PATCH", "/api/v1/goals/{code}", WRITE, 200, _retire_goal, principal="user:u1"),
    Row("GET", ITEM + "/trace", READ, 200, _on_item("/trace", shows='"actions":[]')),
    Row("GET", "/api/v1/traceability/validate", READ, 200, _traceability_report, other=200),
    # next work and queues
    Row(
        "GET",
        "/api/v1/works/next-work",
        READ,
        200,
        _seeded("/api/v1/works/next-work?assigneeType=agent&assigneeId=a1"),
        other=200,
    ),
    Row("GET", "/api/v1/queues/available", READ, 200, _seeded("/api/v1/queues/available"), other=200),
    Row("GET", "/api/v1/queues/claimed", READ, 200, _claimed_queue, other=200),
    Row(
        "GET", "/api/v1/queues/lifecycles/{lifecycle}", READ, 200, _seeded("/api/v1/queues/lifecycles/work"), other=200
    ),
    Row(
        "GET",
        "/api/v1/queues/groups/{group}",
        Scope.work_supervise,
        200,
        _group_queue,
        other=200,
        principal="user:sup",
        groups=("ops",),
    ),
    # The other tenant's agent:a1 has nothing offered to it: 204.
    Row("POST", "/api/v1/queues/claim-next", CLAIM, 200, _seeded("/api/v1/queues/claim-next"), other=204),
    # The types registry is shared by every tenant: only an operator's all-tenant token registers
    # types (a tenant's token is refused), and every tenant reads the same ones.
    Row(
        "POST", "/api/v1/work-item-types", Scope.types_write, 201, _new_type, other=403, principal="user:op", tenant="*"
    ),
    Row("GET", "/api/v1/work-item-types", READ, 200, _fixed("/api/v1/work-item-types", shows='"task"'), other=200),
    Row(
        "GET",
        "/api/v1/work-item-types/{name}",
        READ,
        200,
        _fixed("/api/v1/work-item-types/investigation", shows="successCriteria"),
        other=200,
    ),
]


def _template(route: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", route) + "$")


def _api_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every endpoint under PREFIXES: as the app publishes them (whichever
    module declares them), and as the three routers declare them (hidden ones too)."""
    published = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(PREFIXES)
        for method in operations
    }
    declared = {
        (method, route.path)
        for router in (
            work_items.router,
            queues.router,
            work_item_types.router,
            routing.router,
            routing.items_router,
            policies.router,
            policy_gates.router,
            work_item_runs.router,
            goals.router,
            traceability.router,
        )
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    return published | declared


def test_the_matrix_has_one_row_per_endpoint(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'routes.db'}", data_dir=tmp_path))
    table = [(row.method, row.route) for row in ROWS]
    assert len(table) == len(set(table)), "a row is in the matrix twice"
    # A new endpoint under these prefixes needs a row; a row whose endpoint is gone must go.
    assert set(table) == _api_routes(app)


def _send(client: TestClient, method: str, path: str, body: Any, headers: Headers) -> Any:
    if body is None:
        return client.request(method, path, headers=headers)
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_authorization_matrix(client: TestClient, token: TokenFactory, row: Row) -> None:
    setup = token("user:pm")
    seed_body = task(assignee={"type": "agent", "id": "a1"}, offer={"type": "agent"})
    seed = client.post("/api/v1/work-items", json=seed_body, headers=setup).json()["id"]
    groups = list(row.groups)
    ctx = Ctx(client, setup, token(row.principal, scopes=["work:claim"], groups=groups), seed)
    right = token(row.principal, scopes=[row.scope.value], groups=groups, tenant=row.tenant)
    lacking = token(row.principal, scopes=sorted(EVERY_SCOPE - {row.scope.value}), groups=groups, tenant=row.tenant)
    other_tenant = token(row.principal, scopes=[row.scope.value], groups=groups, tenant="globex")
    call = row.prepare(ctx)
    assert _template(row.route).match(call.path.partition("?")[0]), (call.path, row.route)

    def item_state() -> Any:
        if call.item_id is None:
            return None
        return client.get(f"/api/v1/work-items/{call.item_id}", headers=setup).json()

    def refused(headers: Headers, status: int) -> dict[str, Any]:
        before, state = counts(client), item_state()
        response = _send(client, row.method, call.path, call.json, headers)
        assert response.status_code == status, response.text
        assert counts(client) == before, "a refused call wrote something"
        assert item_state() == state, "a refused call changed the item"
        return error(response)

    # 1. No token.
    anonymous = refused({}, 401)
    assert anonymous["code"] == "unauthorized" and "bearer token" in anonymous["message"]

    # 2. The right principal, with every scope but the one the endpoint needs.
    forbidden = refused(lacking, 403)
    assert forbidden["code"] == "forbidden"
    assert forbidden["details"] == [{"path": "scope", "message": f"needs {row.scope.value}"}]
    if call.item_id is not None:
        # The scope is checked before the item is looked up: no probing for ids without it.
        elsewhere = call.path.replace(call.item_id, MISSING_ID)
        assert _send(client, row.method, elsewhere, call.json, lacking).json() == {"error": forbidden}
        assert _send(client, row.method, elsewhere, call.json, {}).json() == {"error": anonymous}

    # 3. The same principal, with the endpoint's scope, in another tenant.
    if row.other is None:
        assert call.item_id is not None
        hidden = refused(other_tenant, 404)
        missing = _send(client, row.method, call.path.replace(call.item_id, MISSING_ID), call.json, other_tenant)
        assert missing.status_code == 404
        # Word for word what a missing item gets, but for the id itself.
        assert json.dumps(hidden).replace(call.item_id, "<id>") == json.dumps(error(missing)).replace(
            MISSING_ID, "<id>"
        )
        assert hidden["code"] == "not_found"
    else:
        # A fresh call: the types registry is shared, so registering the same name twice would
        # answer 200 for the second tenant.
        other = row.prepare(ctx)
        elsewhere = _send(client, row.method, other.path, other.json, other_tenant)
        assert elsewhere.status_code == row.other, elsewhere.text
        assert "acme" not in elsewhere.text.lower(), elsewhere.text

    # 4. The principal with the endpoint's scope and nothing more.
    response = _send(client, row.method, call.path, call.json, right)
    assert response.status_code == row.success, response.text
    if call.shows is not None and row.success != 204:
        assert call.shows in response.text
    if row.method == "DELETE" and row.route.startswith("/api/v1/work-items"):
        assert client.get(call.path, headers=setup).status_code == 404
    elif row.method == "DELETE" and row.route.startswith("/api/v1/policies"):
        # A policy is retired, not removed: its versions stay readable.
        reader = token("user:auditor", scopes=["policies:read"])
        assert '"retired":true' in client.get(call.path, headers=reader).text
    elif row.method == "DELETE":
        # A routing rule is disabled, not removed: its versions stay readable.
        assert '"enabled":false' in client.get(call.path, headers=setup).text


def test_an_item_of_another_tenant_cannot_be_named_as_tenant_parent_or_dependency(
    client: TestClient, token: TokenFactory
) -> None:
    acme, globex = token("user:a"), token("user:g", tenant="globex")
    epic = client.post("/api/v1/work-items", json={"type": "epic", "title": "acme's"}, headers=acme).json()["id"]
    own = client.post("/api/v1/work-items", json=task(), headers=globex).json()["id"]
    before = counts(client)

    named = client.post("/api/v1/work-items", json=task(tenant="acme"), headers=globex)
    assert named.status_code == 403 and error(named)["code"] == "forbidden"

    def refusal(method: str, path: str, body: dict[str, Any], other_id: str) -> str:
        """The error for acme's item, and for a missing one: the same but for the id."""
        theirs = client.request(method, path, json=body, headers=globex)
        missing = client.request(
            method, path, json=json.loads(json.dumps(body).replace(other_id, MISSING_ID)), headers=globex
        )
        assert theirs.status_code == missing.status_code == 422, theirs.text
        first = json.dumps(error(theirs)).replace(other_id, "<id>")
        assert first == json.dumps(error(missing)).replace(MISSING_ID, "<id>")
        return first

    assert '"path": "parent_id"' in refusal("POST", "/api/v1/work-items", task(parent_id=epic), epic)
    assert '"path": "dependencies.0"' in refusal("POST", "/api/v1/work-items", task(dependencies=[epic]), epic)
    assert '"path": "dependencies.0"' in refusal("PATCH", f"/api/v1/work-items/{own}", {"dependencies": [epic]}, epic)
    listed = client.get("/api/v1/work-items", params={"parent_id": epic}, headers=globex)
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert counts(client) == before


def test_a_supervisor_sees_only_its_own_groups_and_asks_next_work_for_others(
    client: TestClient, token: TokenFactory
) -> None:
    outsider = token("user:sup", scopes=["work:supervise"], groups=["billing"])
    refused = client.get("/api/v1/queues/groups/ops", headers=outsider)
    assert refused.status_code == 403 and error(refused)["code"] == "forbidden"
    reader = token("user:r", scopes=["work:read"])
    params = {"assigneeType": "agent", "assigneeId": "a1"}
    not_mine = client.get("/api/v1/works/next-work", params=params, headers=reader)
    assert not_mine.status_code == 403 and "work:supervise" in error(not_mine)["message"]
    supervisor = token("user:s", scopes=["work:read", "work:supervise"])
    assert client.get("/api/v1/works/next-work", params=params, headers=supervisor).status_code == 200


# Tokens.


def test_an_invalid_or_unknown_token_is_a_401(client: TestClient, token: TokenFactory) -> None:
    before = counts(client)
    for authorization in (
        "Bearer nonsense",
        "Bearer wy_0123456789abcdef_not-a-token-this-server-issued",
        "Bearer ",
        "Basic dXNlcjpwYXNzd29yZA==",
        "wy_0123456789abcdef_no-scheme",
    ):
        response = client.post("/api/v1/work-items", json=task(), headers={"Authorization": authorization})
        assert response.status_code == 401 and error(response)["code"] == "unauthorized", authorization
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert counts(client) == before
    # The scheme's name is case-insensitive (RFC 9110).
    secret = token("user:ann")["Authorization"].removeprefix("Bearer ")
    assert client.get("/api/v1/work-items", headers={"Authorization": f"bearer {secret}"}).status_code == 200


def test_the_token_is_checked_before_the_body_is_read(client: TestClient) -> None:
    """A caller without a valid token learns nothing about its request, not even that its body
    was malformed or too large: 401 first."""
    before = counts(client)
    huge = b"{" + b" " * (client.app.state.wiring.settings.max_request_bytes + 10)  # type: ignore[attr-defined]
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        for content in (b"{not json", huge):
            response = client.post(
                "/api/v1/work-items", content=content, headers={**headers, "content-type": "application/json"}
            )
            assert response.status_code == 401, (headers, response.json())
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert counts(client) == before


def _issue(client: TestClient) -> tuple[str, Headers]:
    with sessions(client).begin() as session:
        issued = create_token(
            session, principal_type=PrincipalType.user, principal_id="ann", tenant="acme", scopes=["work:read"]
        )
    return issued.id, {"Authorization": f"Bearer {issued.secret}"}


def _revoke(client: TestClient, token_id: str) -> None:
    with sessions(client).begin() as session:
        assert revoke_token(session, token_id)


def test_a_token_revoked_before_its_first_use_is_a_401(client: TestClient) -> None:
    token_id, headers = _issue(client)
    _revoke(client, token_id)
    response = client.get("/api/v1/work-items", headers=headers)
    assert response.status_code == 401
    assert error(response) == {
        "code": "unauthorized",
        "message": "the bearer token is unknown or revoked",
        "details": [],
    }


def test_a_used_token_stops_working_once_the_cache_lapses(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process caches a resolved token for ``auth.CACHE_TTL_S`` seconds, so a revocation takes
    up to that long to reach it; a process that had not cached it refuses it at once."""
    token_id, headers = _issue(client)
    assert client.get("/api/v1/work-items", headers=headers).status_code == 200
    _revoke(client, token_id)

    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    with TestClient(create_app(wiring.settings)) as fresh:
        assert fresh.get("/api/v1/work-items", headers=headers).status_code == 401

    later = time.monotonic() + auth.CACHE_TTL_S + 0.5
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: later))
    response = client.get("/api/v1/work-items", headers=headers)
    assert response.status_code == 401 and error(response)["code"] == "unauthorized"


# The audit trail names the caller.


def test_writes_are_audited_to_the_calling_principal(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm", scopes=["work:read", "work:write"])
    a1 = token("agent:a1", scopes=["work:claim"])
    ann = token("user:ann", scopes=["work:read", "work:write"])
    # The body cannot speak for someone else: reporter is data, the actor is the token's.
    body = task(offer={"type": "agent"}, reporter={"type": "user", "id": "mallory"})
    item = client.post("/api/v1/work-items", json=body, headers=pm).json()
    assert item["created_by"] == "user:pm" and item["reporter"] == {"type": "user", "id": "mallory"}
    path = f"/api/v1/work-items/{item['id']}"
    epoch = client.post(f"{path}/claim", headers=a1).json()["lease_epoch"]
    assert client.post(f"{path}/start", json={"lease_epoch": epoch}, headers=a1).status_code == 200
    assert client.post(f"{path}/transition", json={"to": "blocked", "reason": "waits"}, headers=ann).status_code == 200
    assert client.patch(path, json={"assignee": {"type": "user", "id": "bo"}}, headers=ann).status_code == 200
    assert client.post(f"{path}/release", json={"lease_epoch": epoch}, headers=a1).status_code == 200
    shown = client.get(f"{path}/history", headers=pm)
    assert shown.status_code == 200
    expected = [
        ("created", "user:pm"),
        ("claimed", "agent:a1"),
        ("started", "agent:a1"),
        ("transition", "user:ann"),
        ("assigned", "user:ann"),
        ("updated", "user:ann"),
        ("released", "agent:a1"),
    ]
    assert [(e["action"], e["actor"]) for e in shown.json()] == expected
    assert shown.json()[3]["reason"] == "waits" and shown.json()[4]["details"]["assignee"] == "user:bo"
    assert client.delete(path, headers=pm).status_code == 204
    with sessions(client)() as session:  # the item is gone from the API: read its trail from the table
        trail = [(e.action, e.actor) for e in audit.history(session, item["id"])]
    assert trail == [*expected, ("deleted", "user:pm")]
