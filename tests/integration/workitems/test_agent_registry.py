"""The agent registry over HTTP: registering (by an operator, by the agent itself), tenancy,
updates with versions, deregistering, heartbeats, liveness and load in listings, and spend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from models.agent_tables import Agent
from models.base import utcnow
from models.work_tables import WorkItem
from orchestrator.agents.heartbeats import forget_touches
from tests.integration.workitems.conftest import TokenFactory, error, sessions, task

OPS = ("agents:read", "agents:write")


def spec(agent_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "agent_type": "stateless_tool_caller",
        "capabilities": [{"name": "summarize", "proficiency": "expert"}],
        "capacity": 2,
        **extra,
    }


def backdate(client: TestClient, agent_id: str, **ago: float) -> None:
    """Set an agent's heartbeat (or budget period) that many seconds in the past."""
    values = {f"{field}": utcnow() - timedelta(seconds=s) for field, s in ago.items()}
    with sessions(client).begin() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(**values))


def row(client: TestClient, agent_id: str) -> Agent:
    with sessions(client)() as session:
        found: Agent | None = session.get(Agent, ("acme", agent_id))
        assert found is not None
        return found


def test_an_operator_registers_an_agent_once_and_the_same_spec_again_changes_nothing(
    client: TestClient, token: TokenFactory
) -> None:
    ops = token("user:ops", scopes=OPS)
    created = client.post("/api/v1/agents", json=spec("summarizer-1"), headers=ops)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == "summarizer-1" and body["tenant"] == "acme" and body["ref"] == "agent:summarizer-1"
    assert body["spec"]["capabilities"] == [{"name": "summarize", "proficiency": "expert"}]
    assert body["capacity"] == 2 and body["load"] == 0 and body["version"] == 1
    # Registered by an operator, it has never been heard from.
    assert body["liveness"] == "dead" and body["last_heartbeat_at"] is None
    assert body["registered_by"] == "user:ops"

    again = client.post("/api/v1/agents", json=spec("summarizer-1"), headers=ops)
    assert again.status_code == 200 and again.json()["version"] == 1

    other = client.post("/api/v1/agents", json=spec("summarizer-1", capacity=5), headers=ops)
    assert other.status_code == 409 and "PATCH" in error(other)["message"]
    assert client.get("/api/v1/agents/summarizer-1", headers=ops).json()["capacity"] == 2


def test_an_agent_registers_itself_within_its_tokens_tenant_and_capabilities(
    client: TestClient, token: TokenFactory
) -> None:
    me = token("agent:summarizer-1", scopes=["agents:register"], capabilities=["summarize", "translate"])
    created = client.post("/api/v1/agents", json=spec("summarizer-1"), headers=me)
    assert created.status_code == 201, created.text
    # An agent registering itself is alive.
    assert created.json()["liveness"] == "live" and created.json()["last_heartbeat_source"] == "http"
    assert client.get("/api/v1/agents/summarizer-1", headers=me).status_code == 200  # itself, without agents:read

    someone_else = client.post("/api/v1/agents", json=spec("summarizer-2"), headers=me)
    assert someone_else.status_code == 403 and error(someone_else)["details"][0]["path"] == "id"
    elsewhere = client.post("/api/v1/agents", json=spec("summarizer-1", tenant="globex"), headers=me)
    assert elsewhere.status_code == 403
    not_granted = client.post(
        "/api/v1/agents",
        json=spec("summarizer-1", capabilities=[{"name": "summarize"}, {"name": "deploy"}]),
        headers=me,
    )
    assert not_granted.status_code == 403 and "deploy" in error(not_granted)["message"]
    patched = client.patch("/api/v1/agents/summarizer-1", json={"capabilities": [{"name": "deploy"}]}, headers=me)
    assert patched.status_code == 403
    assert client.get("/api/v1/agents", headers=me).status_code == 403  # listing needs agents:read

    # A token that grants no capabilities leaves the agent's declaration to it.
    free = token("agent:free-1", scopes=["agents:register"])
    assert client.post("/api/v1/agents", json=spec("free-1"), headers=free).status_code == 201


def test_tenants_see_their_own_agents_and_the_operators_but_not_each_others(
    client: TestClient, token: TokenFactory
) -> None:
    acme = token("user:ops", scopes=OPS)
    globex = token("user:gops", scopes=OPS, tenant="globex")
    root = token("user:root", scopes=["admin"], tenant="*")
    assert client.post("/api/v1/agents", json=spec("acme-bot"), headers=acme).status_code == 201
    assert client.post("/api/v1/agents", json=spec("globex-bot"), headers=globex).status_code == 201
    shared = client.post("/api/v1/agents", json=spec("shared-bot"), headers=root)
    assert shared.status_code == 201 and shared.json()["tenant"] == "*"

    listed = {a["id"] for a in client.get("/api/v1/agents", headers=acme).json()["agents"]}
    assert listed == {"acme-bot", "shared-bot"}
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"capacity": 3}} if method == "patch" else {}
        answer = getattr(client, method)("/api/v1/agents/globex-bot", headers=acme, **kwargs)
        assert answer.status_code == 404, (method, answer.text)
    # The operators' agent serves acme, but only an all-tenant token changes it.
    assert client.get("/api/v1/agents/shared-bot", headers=acme).status_code == 200
    assert client.patch("/api/v1/agents/shared-bot", json={"capacity": 3}, headers=acme).status_code == 403
    assert client.post("/api/v1/agents", json=spec("x", tenant="globex"), headers=acme).status_code == 403
    assert client.get("/api/v1/agents?tenant=globex", headers=acme).status_code == 403
    # One id is either the operators' or tenants' own.
    clash = client.post("/api/v1/agents", json=spec("shared-bot"), headers=acme)
    assert clash.status_code == 409 and error(clash)["details"][0]["path"] == "id"
    # An all-tenant token sees every tenant's, and names the tenant of an id registered in several.
    assert client.post("/api/v1/agents", json=spec("acme-bot"), headers=globex).status_code == 201
    assert client.get("/api/v1/agents/acme-bot", headers=root).status_code == 409
    assert client.get("/api/v1/agents/acme-bot?tenant=globex", headers=root).json()["tenant"] == "globex"
    assert len(client.get("/api/v1/agents", headers=root).json()["agents"]) == 4


def test_an_update_applies_at_the_version_it_read_and_replaces_whole_fields(
    client: TestClient, token: TokenFactory
) -> None:
    ops = token("user:ops", scopes=OPS)
    client.post("/api/v1/agents", json=spec("bot", budget={"unit": "USD", "limit": 10}), headers=ops)
    changed = client.patch(
        "/api/v1/agents/bot",
        json={"version": 1, "capabilities": [{"name": "translate"}], "autonomy": "L3", "budget": None},
        headers=ops,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["version"] == 2 and body["spec"]["autonomy"] == "L3" and body["spec"]["budget"] is None
    assert body["spec"]["capabilities"] == [{"name": "translate", "proficiency": "intermediate"}]
    assert body["spec"]["capacity"] == 2  # left out: kept

    stale = client.patch("/api/v1/agents/bot", json={"version": 1, "capacity": 9}, headers=ops)
    assert stale.status_code == 409 and error(stale)["details"][0]["path"] == "version"
    stale_header = client.patch("/api/v1/agents/bot", json={"capacity": 9}, headers={**ops, "If-Match": '"1"'})
    assert stale_header.status_code == 409
    same = client.patch("/api/v1/agents/bot", json={"autonomy": "L3"}, headers={**ops, "If-Match": "2"})
    assert same.status_code == 200 and same.json()["version"] == 2  # nothing changed: no new version

    # The capability filter follows the update.
    by_capability = client.get("/api/v1/agents?capability=translate", headers=ops).json()["agents"]
    assert [a["id"] for a in by_capability] == ["bot"]
    assert client.get("/api/v1/agents?capability=summarize", headers=ops).json()["agents"] == []


def test_bad_input_is_a_422_naming_the_field(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=OPS)
    for body, path in [
        (spec("bot", agent_type="oracle"), "body.agent_type"),
        (spec("a/b"), "body.id"),
        (spec("bot", capacity=0), "body.capacity"),
        (spec("bot", capabilities=[{"name": "x"}, {"name": "x", "proficiency": "novice"}]), "body"),
        ({k: v for k, v in spec("bot").items() if k != "agent_type"}, "body.agent_type"),
    ]:
        answer = client.post("/api/v1/agents", json=body, headers=ops)
        assert answer.status_code == 422, (body, answer.text)
        assert error(answer)["details"][0]["path"] == path, answer.text
    client.post("/api/v1/agents", json=spec("bot"), headers=ops)
    nulled = client.patch("/api/v1/agents/bot", json={"capacity": None}, headers=ops)
    assert nulled.status_code == 422 and error(nulled)["details"][0]["path"] == "body.capacity"
    assert client.get("/api/v1/agents?liveness=asleep", headers=ops).status_code == 422


def test_a_deregistered_agent_is_gone_until_registered_again(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=OPS)
    client.post("/api/v1/agents", json=spec("bot"), headers=ops)
    assert client.delete("/api/v1/agents/bot", headers=ops).status_code == 204
    assert client.get("/api/v1/agents/bot", headers=ops).status_code == 404
    assert client.delete("/api/v1/agents/bot", headers=ops).status_code == 404
    assert client.get("/api/v1/agents", headers=ops).json()["agents"] == []
    again = client.post("/api/v1/agents", json=spec("bot", capacity=4), headers=ops)
    assert again.status_code == 201 and again.json()["capacity"] == 4 and again.json()["version"] == 2
    # An agent may take itself out.
    me = token("agent:bot", scopes=["agents:register"])
    assert client.delete("/api/v1/agents/bot", headers=me).status_code == 204


def test_listing_shows_live_stale_and_dead_agents_and_filters_by_them(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=OPS)
    for name in ("a-live", "b-stale", "c-dead", "d-never"):
        client.post("/api/v1/agents", json=spec(name), headers=ops)
    # The defaults: live within 90 s, stale within 600 s.
    backdate(client, "a-live", last_heartbeat_at=80)
    backdate(client, "b-stale", last_heartbeat_at=100)
    backdate(client, "c-dead", last_heartbeat_at=700)
    listed = client.get("/api/v1/agents", headers=ops).json()["agents"]
    assert {a["id"]: a["liveness"] for a in listed} == {
        "a-live": "live",
        "b-stale": "stale",
        "c-dead": "dead",
        "d-never": "dead",
    }
    for state, expected in [("live", ["a-live"]), ("stale", ["b-stale"]), ("dead", ["c-dead", "d-never"])]:
        page = client.get(f"/api/v1/agents?liveness={state}", headers=ops).json()["agents"]
        assert [a["id"] for a in page] == expected, state
    # Paged in id order, with an opaque cursor.
    first = client.get("/api/v1/agents?limit=3", headers=ops).json()
    assert [a["id"] for a in first["agents"]] == ["a-live", "b-stale", "c-dead"] and first["next_cursor"]
    rest = client.get(f"/api/v1/agents?limit=3&cursor={first['next_cursor']}", headers=ops).json()
    assert [a["id"] for a in rest["agents"]] == ["d-never"] and rest["next_cursor"] is None
    assert client.get("/api/v1/agents?agent_type=actuator", headers=ops).json()["agents"] == []


def test_load_counts_the_open_items_an_agent_holds_a_live_claim_on(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=[*OPS, "work:write", "work:read"])
    bot = token("agent:bot", capabilities=["summarize"])
    client.post("/api/v1/agents", json=spec("bot", capacity=3), headers=ops)
    ids = [
        client.post("/api/v1/work-items", json=task(offer={"type": "agent"}), headers=ops).json()["id"]
        for _ in range(4)
    ]
    claims = [client.post(f"/api/v1/work-items/{i}/start", headers=bot).json() for i in ids]
    assert client.get("/api/v1/agents/bot", headers=ops).json()["load"] == 4
    # Completed: no longer held. Lapsed: held by nobody (not yet swept).
    lease = {"lease_epoch": claims[0]["lease_epoch"]}
    done = client.post(f"/api/v1/work-items/{ids[0]}/complete", json=lease, headers=bot)
    assert done.status_code == 200, done.text
    with sessions(client).begin() as session:
        session.execute(
            update(WorkItem).where(WorkItem.id == ids[1]).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    shown = client.get("/api/v1/agents/bot", headers=ops).json()
    assert (shown["load"], shown["capacity"]) == (2, 3)


def test_an_agent_beats_for_itself_and_its_work_calls_keep_it_live(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=[*OPS, "work:write"])
    bot = token("agent:bot")
    client.post("/api/v1/agents", json=spec("bot"), headers=ops)
    client.post("/api/v1/agents", json=spec("other"), headers=ops)
    beat = client.post("/api/v1/agents/bot/heartbeat", headers=bot)
    assert beat.status_code == 200 and beat.json()["liveness"] == "live"
    assert client.post("/api/v1/agents/other/heartbeat", headers=bot).status_code == 403
    assert client.post("/api/v1/agents/bot/heartbeat", headers=token("user:ann")).status_code == 403

    # A claim marks it live (its last mark being old) ...
    forget_touches()
    backdate(client, "bot", last_heartbeat_at=3600)
    item = client.post("/api/v1/work-items", json=task(offer={"type": "agent"}), headers=ops).json()
    claimed = client.post(f"/api/v1/work-items/{item['id']}/claim", headers=bot)
    assert claimed.status_code == 200
    marked = row(client, "bot").last_heartbeat_at
    assert marked is not None and utcnow() - marked < timedelta(seconds=30)
    assert row(client, "bot").last_heartbeat_source == "http"
    # ... but not on every call: within a few seconds of its last mark, a call writes nothing.
    backdate(client, "bot", last_heartbeat_at=3600)
    lease = {"lease_epoch": claimed.json()["lease_epoch"]}
    assert client.post(f"/api/v1/work-items/{item['id']}/heartbeat", json=lease, headers=bot).status_code == 200
    assert utcnow() - (row(client, "bot").last_heartbeat_at or utcnow()) > timedelta(seconds=3000)
    forget_touches()  # as if the few seconds had passed
    refused = client.post(f"/api/v1/work-items/{item['id']}/claim", headers=bot)
    assert refused.status_code == 409  # it holds it already: still a sign of life
    assert utcnow() - (row(client, "bot").last_heartbeat_at or utcnow()) < timedelta(seconds=30)


def test_costs_add_up_within_the_budgets_period_and_a_new_period_starts_from_nothing(
    client: TestClient, token: TokenFactory
) -> None:
    ops = token("user:ops", scopes=[*OPS, "work:write"])
    bot = token("agent:bot")
    client.post("/api/v1/agents", json=spec("bot", budget={"unit": "USD", "limit": 5, "period": "day"}), headers=ops)

    def work(action: str, **body: Any) -> None:
        item = client.post("/api/v1/work-items", json=task(offer={"type": "agent"}), headers=ops).json()
        epoch = client.post(f"/api/v1/work-items/{item['id']}/start", headers=bot).json()["lease_epoch"]
        lease = {"lease_epoch": epoch, **body}
        done = client.post(f"/api/v1/work-items/{item['id']}/{action}", json=lease, headers=bot)
        assert done.status_code == 200, done.text
        # A retry (the answer was lost to a timeout) answers the same and costs nothing more.
        again = client.post(f"/api/v1/work-items/{item['id']}/{action}", json=lease, headers=bot)
        assert again.status_code == 200 and again.json() == done.json(), again.text

    work("complete", cost=1.5)
    work("fail", reason="no source", cost=0.25)
    work("complete")  # no cost: nothing recorded
    shown = client.get("/api/v1/agents/bot", headers=ops).json()
    assert shown["spent"] == 1.75 and shown["period_start"] is not None

    # The day rolled over since: what was spent counts for nothing now, and the next cost starts anew.
    backdate(client, "bot", period_start=2 * 86_400)
    assert client.get("/api/v1/agents/bot", headers=ops).json()["spent"] == 0
    work("complete", cost=2)
    assert client.get("/api/v1/agents/bot", headers=ops).json()["spent"] == 2

    negative = client.post("/api/v1/work-items/x/complete", json={"lease_epoch": 1, "cost": -1}, headers=bot)
    assert negative.status_code == 422 and error(negative)["details"][0]["path"] == "body.cost"


def test_an_agent_cannot_lift_the_limits_its_operator_set(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=OPS)
    me = token("agent:bot", scopes=["agents:register"], capabilities=["summarize", "translate"])
    limited = spec(
        "bot", autonomy="L1", budget={"unit": "USD", "limit": 1, "period": "day"}, safety={"two_person_rule": True}
    )
    assert client.post("/api/v1/agents", json=limited, headers=ops).status_code == 201
    for lifted in ({"autonomy": "L4"}, {"budget": None}, {"safety": None}, {"roles": ["oncall"]}):
        refused = client.patch("/api/v1/agents/bot", json=lifted, headers=me)
        assert refused.status_code == 403, (lifted, refused.text)
        assert refused.json()["error"]["details"][0]["path"] == next(iter(lifted))
    # What it can do and how much at once are its own to say.
    more = client.patch(
        "/api/v1/agents/bot",
        json={"capacity": 3, "capabilities": [{"name": "summarize"}, {"name": "translate"}]},
        headers=me,
    )
    assert more.status_code == 200 and more.json()["spec"]["capacity"] == 3
    shown = client.get("/api/v1/agents/bot", headers=ops).json()
    kept = shown["spec"]
    assert kept["autonomy"] == "L1" and kept["budget"]["limit"] == 1 and kept["safety"]["two_person_rule"]


def test_an_agent_cannot_undo_its_deregistration_nor_reset_its_spend(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=[*OPS, "work:write"])
    me = token("agent:bot", scopes=["agents:register", "work:claim"])
    client.post("/api/v1/agents", json=spec("bot", budget={"unit": "USD", "limit": 5, "period": "day"}), headers=ops)
    item = client.post("/api/v1/work-items", json=task(offer={"type": "agent"}), headers=ops).json()
    epoch = client.post(f"/api/v1/work-items/{item['id']}/start", headers=me).json()["lease_epoch"]
    client.post(f"/api/v1/work-items/{item['id']}/complete", json={"lease_epoch": epoch, "cost": 4}, headers=me)
    # Leaving and coming back in the same day keeps what it spent.
    assert client.delete("/api/v1/agents/bot", headers=me).status_code == 204
    assert client.post("/api/v1/agents", json=spec("bot"), headers=me).status_code == 201
    assert client.get("/api/v1/agents/bot", headers=ops).json()["spent"] == 4
    # Taken out by its operator: it may not put itself back.
    assert client.delete("/api/v1/agents/bot", headers=ops).status_code == 204
    refused = client.post("/api/v1/agents", json=spec("bot"), headers=me)
    assert refused.status_code == 403 and "deregistered by user:ops" in refused.json()["error"]["message"]
    assert client.post("/api/v1/agents", json=spec("bot"), headers=ops).status_code == 201
