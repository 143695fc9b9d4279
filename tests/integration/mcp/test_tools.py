"""The MCP tools as an agent meets them, over streamable HTTP and over stdio (``workyard mcp``), on
SQLite and PostgreSQL: what it is offered (tools, schemas, resources), its loop, and its errors,
which are the HTTP API's own codes, messages and details."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from models.agents import AgentSpec, AgentType, Budget, CapabilityDecl
from models.base import utcnow
from orchestrator.sagas.templates import parse_template, register_template
from tests.integration.mcp.conftest import MAX_PAYLOAD_BYTES, Served, connect
from tests.integration.templates import THREE_STEPS
from tests.support import eventually
from workers.client import ApiError, Held, WorkyardClient

TOOLS = {
    "next_work",
    "list_available",
    "claim_next",
    "claim",
    "start",
    "heartbeat",
    "complete",
    "fail",
    "release",
    "get_item",
    "history",
    "submit_saga",
    "saga_status",
}
# Pydantic's names for limits, which JSON Schema does not know: a model reading them learns nothing.
NOT_JSON_SCHEMA = {"gt", "ge", "lt", "le"}


def fresh(prefix: str) -> str:
    """A name of this test's own (a capability, a principal): tests share a module's API."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for v in schema.values() for k in keys(v)}
    if isinstance(schema, list):
        return {k for v in schema for k in keys(v)}
    return set()


def test_every_tool_is_described_and_typed(served: Served, transport: str, tmp_path: Path) -> None:
    with connect(transport, served, served.token(fresh("agent:lister")), tmp_path) as mcp:
        tools = {tool.name: tool for tool in mcp.tools()}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
        assert not keys(tool.input_schema) & NOT_JSON_SCHEMA, f"{tool.name}: {tool.input_schema}"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
    heartbeat = tools["heartbeat"].input_schema
    assert heartbeat["required"] == ["item_id", "lease_epoch"]
    assert {"exclusiveMinimum": 0, "maximum": 86400, "type": "number"} in heartbeat["properties"]["ttl_s"]["anyOf"]
    assert "progress" in heartbeat["properties"]
    assert tools["claim"].output_schema["title"] == "WorkItemRead"
    assert "result" in tools["claim_next"].output_schema["properties"]
    assert tools["get_item"].annotations.read_only_hint is True
    assert tools["complete"].annotations.read_only_hint is False


def test_item_types_are_resources_with_their_json_schemas(served: Served, transport: str, tmp_path: Path) -> None:
    token = served.token(fresh("agent:reader"))
    with connect(transport, served, token, tmp_path) as mcp:
        listed = [r.uri for r in mcp.resources()]
        templates = [t.uri_template for t in mcp.resource_templates()]
        every = json.loads(mcp.read("workyard://work-item-types"))
        task = json.loads(mcp.read("workyard://work-item-types/task"))
        with pytest.raises(MCPError) as unknown:
            mcp.read("workyard://work-item-types/no-such-type")
    with connect(transport, served, served.token(fresh("agent:blind"), scopes=("work:claim",)), tmp_path) as mcp:
        with pytest.raises(MCPError) as blind:
            mcp.read("workyard://work-item-types")
    with WorkyardClient(served.url, token) as http:
        expected = [t.model_dump(mode="json", by_alias=True) for t in http.list_types()]
    assert listed == ["workyard://work-item-types"]
    assert templates == ["workyard://work-item-types/{name}"]
    assert every == expected and {"task", "job", "investigation"} <= {t["name"] for t in every}
    assert task == next(t for t in expected if t["name"] == "task") and task["schema"]["type"] == "object"
    assert unknown.value.error.data["error"]["code"] == "not_found"
    assert blind.value.error.data == {
        "error": {
            "code": "forbidden",
            "message": "this token lacks the work:read scope",
            "details": [{"path": "scope", "message": "needs work:read"}],
        }
    }


def test_an_agent_claims_starts_heartbeats_and_completes(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("summarize")
    agent = fresh("agent:summarizer")
    token = served.token(agent, capabilities=(capability,))
    with connect(transport, served, token, tmp_path) as mcp:
        empty = mcp.call("claim_next", ttl_s=20)
        created = served.create_item(capability)
        claimed = mcp.ok("claim_next", ttl_s=20)["result"]
        epoch = claimed["lease_epoch"]
        started = mcp.ok("start", item_id=created.id, lease_epoch=epoch)
        beat = mcp.ok("heartbeat", item_id=created.id, lease_epoch=epoch, ttl_s=120, progress={"done": 1, "of": 2})
        done = mcp.ok("complete", item_id=created.id, lease_epoch=epoch, result={"summary": "INC-7: a, b"})
        events = mcp.ok("history", item_id=created.id)["result"]
        seen = mcp.ok("get_item", item_id=created.id)
    assert not empty.is_error and empty.structured_content == {"result": None}
    assert "nothing to claim" in empty.content[0].text  # type: ignore[union-attr]
    assert claimed["id"] == created.id and claimed["claim"]["id"] == agent.split(":")[1]
    assert started["status"] == "in_progress" and started["lease_epoch"] == epoch
    assert when(beat["claim"]["lease_expires_at"]) > when(claimed["claim"]["lease_expires_at"])
    assert beat["progress"] == {"done": 1, "of": 2}
    assert done["status"] == "review" and done["result"] == {"summary": "INC-7: a, b"} and done["claim"] is None
    assert [e["action"] for e in events] == ["created", "claimed", "started", "completed"]
    assert {e["actor"] for e in events[1:]} == {agent}
    with WorkyardClient(served.url, token) as http:
        assert seen == http.get_work_item(created.id).model_dump(mode="json")


def test_list_claim_release_and_fail(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("triage")
    first, second = served.create_item(capability), served.create_item(capability)
    with connect(transport, served, served.token(fresh("agent:triager"), capabilities=(capability,)), tmp_path) as mcp:
        page = mcp.ok("list_available", limit=1)
        rest = mcp.ok("list_available", limit=1, cursor=page["next_cursor"])
        held = mcp.ok("claim", item_id=first.id, ttl_s=30)
        released = mcp.ok("release", item_id=first.id, lease_epoch=held["lease_epoch"], reason="not mine")
        again = mcp.ok("claim", item_id=first.id)
        stale = mcp.error("release", item_id=first.id, lease_epoch=held["lease_epoch"])
        failed = mcp.ok("fail", item_id=first.id, lease_epoch=again["lease_epoch"], reason="INC-7 is unreadable")
    assert [i["id"] for i in page["items"] + rest["items"]] == [first.id, second.id]
    assert released["claim"] is None and again["lease_epoch"] == held["lease_epoch"] + 1
    assert stale["code"] == "conflict" and f"lease epoch {held['lease_epoch']} is stale" in stale["message"]
    assert failed["status"] == "cancelled" and failed["reason"] == "INC-7 is unreadable"


def test_a_lost_lease_is_a_conflict_that_says_to_claim_again(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("slow")
    created = served.create_item(capability)
    token = served.token(fresh("agent:slow"), capabilities=(capability,))
    with connect(transport, served, token, tmp_path) as mcp:
        held = mcp.ok("claim", item_id=created.id, ttl_s=0.3)
        expires = when(held["claim"]["lease_expires_at"])
        eventually(lambda: utcnow() > expires, timeout=10, what="the lease to lapse")
        lost = mcp.error("complete", item_id=created.id, lease_epoch=held["lease_epoch"], result={"late": True})
        after = mcp.ok("get_item", item_id=created.id)
    assert lost["code"] == "conflict"
    assert lost["message"].startswith(f"the lease on {created.id} expired at ")
    assert lost["message"].endswith("; claim it again")
    assert after["result"] is None and after["status"] == "todo"
    # Word for word what the HTTP API answers the same call.
    with WorkyardClient(served.url, token) as http, pytest.raises(ApiError) as refused:
        http.complete(Held(created.id, held["lease_epoch"]), {"late": True})
    assert refused.value.status == 409
    assert lost == {"code": refused.value.code, "message": refused.value.message, "details": refused.value.details}


def test_another_tenants_item_is_not_found_as_over_http(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("shared")
    created = served.create_item(capability, tenant="acme")
    outsider = served.token(fresh("agent:outsider"), tenant="globex", capabilities=(capability,))
    item = {"item_id": created.id}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_item", item),
        ("history", item),
        ("claim", item),
        ("start", item),
        ("heartbeat", {**item, "lease_epoch": 1}),
        ("complete", {**item, "lease_epoch": 1, "result": "taken"}),
        ("fail", {**item, "lease_epoch": 1, "reason": "no"}),
        ("release", {**item, "lease_epoch": 1}),
    ]
    with connect(transport, served, outsider, tmp_path) as mcp:
        errors = {tool: mcp.error(tool, **arguments) for tool, arguments in calls}
        offered = mcp.ok("claim_next")["result"]
    with WorkyardClient(served.url, outsider) as http, pytest.raises(ApiError) as refused:
        http.get_work_item(created.id)
    over_http = {"code": refused.value.code, "message": refused.value.message, "details": refused.value.details}
    assert refused.value.status == 404 and over_http["code"] == "not_found"
    assert errors == {tool: over_http for tool, _ in calls}
    assert offered is None
    owner = served.token(fresh("agent:owner"))
    with WorkyardClient(served.url, owner) as http:
        untouched = http.get_work_item(created.id)
    assert untouched.claim is None and untouched.status == "todo" and untouched.lease_epoch == 0


def test_a_token_without_the_scope_is_forbidden(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("watch")
    served.create_item(capability)
    reader = served.token(fresh("agent:watcher"), scopes=("work:read",), capabilities=(capability,))
    with connect(transport, served, reader, tmp_path) as mcp:
        refused = mcp.error("claim_next")
        visible = mcp.ok("list_available")["items"]
    assert refused == {
        "code": "forbidden",
        "message": "this token lacks the work:claim scope",
        "details": [{"path": "scope", "message": "needs work:claim"}],
    }
    assert len(visible) == 1 and visible[0]["claim"] is None


def test_a_result_over_the_payload_limit_is_refused(served: Served, transport: str, tmp_path: Path) -> None:
    capability = fresh("verbose")
    created = served.create_item(capability)
    with connect(transport, served, served.token(fresh("agent:verbose"), capabilities=(capability,)), tmp_path) as mcp:
        held = mcp.ok("claim", item_id=created.id)
        refused = mcp.error(
            "complete", item_id=created.id, lease_epoch=held["lease_epoch"], result="x" * MAX_PAYLOAD_BYTES
        )
        still = mcp.ok("get_item", item_id=created.id)
    assert refused["code"] == "payload_too_large" and refused["details"][0]["path"] == "result"
    assert still["claim"] is not None and still["result"] is None


def test_arguments_outside_the_limits_are_refused_before_any_call(
    served: Served, transport: str, tmp_path: Path
) -> None:
    capability = fresh("strict")
    created = served.create_item(capability)
    with connect(transport, served, served.token(fresh("agent:strict"), capabilities=(capability,)), tmp_path) as mcp:
        refusals = [
            mcp.call("claim_next", ttl_s=0),
            mcp.call("claim_next", ttl_s=True),  # not one second
            mcp.call("claim", item_id=""),
            mcp.call("heartbeat", item_id=created.id),  # no lease_epoch
        ]
        after = mcp.ok("get_item", item_id=created.id)
    for refused, field in zip(refusals, ("ttl_s", "ttl_s", "item_id", "lease_epoch"), strict=True):
        assert refused.is_error and field in refused.content[0].text  # type: ignore[union-attr]
        # The SDK's own argument checks answer in workyard's error shape too, as every other refusal.
        error = (refused.structured_content or {}).get("error")
        assert error is not None and error["code"] == "invalid_input", refused
        assert [d["path"] for d in error["details"]] == [field], error
        assert refused.content[0].text.startswith("invalid_input: ")  # type: ignore[union-attr]
    assert after["lease_epoch"] == 0


def test_next_work_is_the_next_work_rules_answer(served: Served, transport: str, tmp_path: Path) -> None:
    agent = fresh("agent:assigned")
    ident = agent.split(":")[1]
    created = served.create_item(fresh("nobody"), assignee={"type": "agent", "id": ident})
    token = served.token(agent)
    with connect(transport, served, token, tmp_path) as mcp:
        mine = mcp.ok("next_work", assignee_type="agent", assignee_id=ident)
        others = mcp.error("next_work", assignee_type="user", assignee_id="ann")
    with WorkyardClient(served.url, token) as http:
        assert mine == http.next_work("agent", ident).model_dump(mode="json")
    assert mine["work"]["id"] == created.id and mine["metadata"]["priorityLevel"] == 2
    assert others["code"] == "forbidden"


@pytest.fixture(scope="module")
def template(served: Served) -> str:
    register_template(served.wiring.sessions, parse_template(THREE_STEPS), tenant="acme")
    return str(THREE_STEPS["name"])


def test_submit_a_saga_and_follow_it(served: Served, template: str, transport: str, tmp_path: Path) -> None:
    upstream = served.token(fresh("user:upstream"), scopes=("sagas:read", "sagas:write"))
    tag = fresh("order")
    with connect(transport, served, upstream, tmp_path) as mcp:
        submitted = mcp.ok("submit_saga", template=template, input={"tag": tag}, idempotence_key=tag)
        again = mcp.ok("submit_saga", template=template, input={"tag": tag}, idempotence_key=tag)
        status = mcp.ok("saga_status", saga_id=submitted["id"])
        other_input = mcp.error("submit_saga", template=template, input={"tag": "else"}, idempotence_key=tag)
        unknown = mcp.error("submit_saga", template="it.nope", input={})
        invalid = mcp.error("submit_saga", template=template, input={"tag": 7})
    outsider = served.token(fresh("user:outsider"), scopes=("sagas:read", "sagas:write"), tenant="globex")
    with connect(transport, served, outsider, tmp_path) as mcp:
        hidden = mcp.error("saga_status", saga_id=submitted["id"])
    workers_only = served.token(fresh("agent:worker"))
    with connect(transport, served, workers_only, tmp_path) as mcp:
        forbidden = mcp.error("submit_saga", template=template, input={"tag": tag})
    assert submitted["state"] == "running" and submitted["tenant"] == "acme" and submitted["input"] == {"tag": tag}
    assert again["id"] == submitted["id"] and status["id"] == submitted["id"]
    assert [s["name"] for s in status["steps"]] == ["one", "two", "three"]
    assert other_input["code"] == "conflict"
    assert unknown["code"] == "not_found" and "it.nope" in unknown["message"]
    assert invalid["code"] == "invalid_input" and invalid["details"]
    assert hidden["code"] == "not_found"
    assert forbidden["message"] == "this token lacks the sagas:write scope"
    with WorkyardClient(served.url, outsider) as http, pytest.raises(ApiError) as refused:
        http.get_saga(submitted["id"])
    assert hidden == {"code": refused.value.code, "message": refused.value.message, "details": refused.value.details}


def test_a_cost_sent_with_complete_counts_against_the_agents_budget(
    served: Served, transport: str, tmp_path: Path
) -> None:
    capability = fresh("summarize")
    agent = fresh("agent:summarizer")
    token = served.token(agent, scopes=("work:read", "work:claim", "agents:register"), capabilities=(capability,))
    agent_id = agent.split(":")[1]
    spec = AgentSpec(
        agent_type=AgentType.stateless_tool_caller,
        capabilities=[CapabilityDecl(name=capability)],
        budget=Budget(unit="USD", limit=10, period="day"),
    )
    with WorkyardClient(served.url, token) as http:
        http.register_agent(agent_id, spec)
    served.create_item(capability)
    with connect(transport, served, token, tmp_path) as mcp:
        claimed = mcp.ok("claim_next", ttl_s=20)["result"]
        mcp.ok("start", item_id=claimed["id"], lease_epoch=claimed["lease_epoch"])
        args = {"item_id": claimed["id"], "lease_epoch": claimed["lease_epoch"], "result": "ok", "cost": 0.75}
        first, again = mcp.ok("complete", **args), mcp.ok("complete", **args)
    assert first == again  # a retry answers the same, and costs nothing more
    with WorkyardClient(served.url, token) as http:
        assert http.get_agent(agent_id).spent == 0.75
