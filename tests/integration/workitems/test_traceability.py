"""Traceability (the work-items spec §13), on SQLite and PostgreSQL: the goal registry, agents'
actions and artifacts with deterministic ids, an item's trace, and the validation document;
tenants kept apart, bad input refused naming the field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select

from models.base import utcnow
from models.gate_tables import EvidenceRow, PolicyRow
from models.trace_tables import ACTIONS, GOALS, TRACE_EPOCH, AgentActionRow, ArtifactRow
from models.work_tables import COMPENSATIONS, EVENTS, WorkItem
from orchestrator.traceability.ids import action_id, artifact_id
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions, task
from tests.integration.workitems.test_policy_gates import POLICY, change, to_review

MISSING_GOAL = "GOAL-NOPE-999"
AGENT_SCOPES = ["work:read", "work:write", "work:claim"]


def goal(code: str = "GOAL-FINSERV-001", **extra: Any) -> dict[str, Any]:
    return {"code": code, "title": "Settle payments same day", **extra}


def validate(client: TestClient, headers: Headers, **params: str) -> dict[str, Any]:
    response = client.get("/api/v1/traceability/validate", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def unapproved_gate(session: Any, item_id: str, actor: str, **details: Any) -> None:
    """An audit row of a gate passed with no approval (written behind the checks' back), its
    ``details`` those of the passage (hitl, policy and version)."""
    session.execute(
        insert(EVENTS).values(
            item_id=item_id,
            tenant="acme",
            action="gate_passed",
            actor=actor,
            details={"transition": "review->done", **details, "approvals": [], "evidence": []},
            at=utcnow(),
        )
    )


def agent_item(client: TestClient, setup: Headers, **extra: Any) -> str:
    response = client.post("/api/v1/work-items", json=task(offer={"type": "agent"}, **extra), headers=setup)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_the_goal_registry_registers_lists_and_refuses_duplicates_and_bad_input(
    client: TestClient, token: TokenFactory
) -> None:
    pm = token("user:pm")
    made = client.post("/api/v1/goals", json=goal(description="T+0"), headers=pm)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["code"], body["tenant"], body["status"], body["created_by"]) == (
        "GOAL-FINSERV-001",
        "acme",
        "active",
        "user:pm",
    )
    client.post("/api/v1/goals", json=goal("GOAL-FINSERV-002", status="retired"), headers=pm)
    listed = client.get("/api/v1/goals", headers=pm).json()
    assert [g["code"] for g in listed] == ["GOAL-FINSERV-001", "GOAL-FINSERV-002"]
    active = client.get("/api/v1/goals", params={"status": "active"}, headers=pm).json()
    assert [g["code"] for g in active] == ["GOAL-FINSERV-001"]
    assert client.get("/api/v1/goals/GOAL-FINSERV-001", headers=pm).json()["description"] == "T+0"

    before = counts(client)
    again = client.post("/api/v1/goals", json=goal(title="other"), headers=pm)
    assert again.status_code == 409 and error(again)["details"][0]["path"] == "code"
    for bad, field in (
        (goal("goal-lower-1"), "code"),
        (goal("GOALONLY"), "code"),
        ({"code": "GOAL-X-1"}, "title"),
        (goal(title=""), "title"),
        (goal(status="paused"), "status"),
        (goal(extra=1), "extra"),
    ):
        refused = client.post("/api/v1/goals", json=bad, headers=pm)
        assert refused.status_code == 422, refused.text
        assert field in str(error(refused)["details"]), (bad, refused.text)
    assert client.get("/api/v1/goals/not-a-code", headers=pm).status_code == 422
    assert client.get("/api/v1/goals", params={"status": "gone"}, headers=pm).status_code == 422
    assert counts(client) == before


def test_tenants_keep_their_goals_apart(client: TestClient, token: TokenFactory) -> None:
    acme, globex = token("user:pm"), token("user:g", tenant="globex")
    assert client.post("/api/v1/goals", json=goal(), headers=acme).status_code == 201
    assert client.get("/api/v1/goals", headers=globex).json() == []
    theirs = client.get("/api/v1/goals/GOAL-FINSERV-001", headers=globex)
    missing = client.get(f"/api/v1/goals/{MISSING_GOAL}", headers=globex)
    assert theirs.status_code == missing.status_code == 404
    assert error(theirs)["message"].replace("GOAL-FINSERV-001", "<code>") == error(missing)["message"].replace(
        MISSING_GOAL, "<code>"
    )
    # The same code is another tenant's own goal.
    assert client.post("/api/v1/goals", json=goal(title="theirs"), headers=globex).status_code == 201
    assert client.get("/api/v1/goals/GOAL-FINSERV-001", headers=acme).json()["title"] == "Settle payments same day"
    # Naming a tenant is for all-tenant tokens.
    named = client.post("/api/v1/goals", json=goal("GOAL-X-1", tenant="globex"), headers=acme)
    assert named.status_code == 403
    operator = token("user:op", tenant="*")
    unnamed = client.post("/api/v1/goals", json=goal("GOAL-X-1"), headers=operator)
    assert unnamed.status_code == 422 and error(unnamed)["details"][0]["path"] == "tenant"
    assert client.post("/api/v1/goals", json=goal("GOAL-X-1", tenant="globex"), headers=operator).status_code == 201


def test_an_agents_work_is_a_chain_of_actions_and_artifacts_with_deterministic_ids(
    client: TestClient, token: TokenFactory
) -> None:
    pm, agent = token("user:pm"), token("agent:a1", scopes=AGENT_SCOPES)
    client.post("/api/v1/goals", json=goal(), headers=pm)
    item_id = agent_item(client, pm, related_goals=["GOAL-FINSERV-001", "GOAL-UNREG-1"])
    base = f"/api/v1/work-items/{item_id}"

    claimed = client.post(f"{base}/claim", headers=agent)
    assert claimed.status_code == 200, claimed.text
    epoch = claimed.json()["lease_epoch"]
    started = client.post(f"{base}/start", json={"lease_epoch": epoch}, headers=agent)
    assert started.status_code == 200, started.text
    evidence = {"id": "ev-1", "evidenceType": "attachment", "artifacts": [{"content": "minutes"}]}
    assert client.post(f"{base}/evidence", json=evidence, headers=agent).status_code == 201
    assert client.post(f"{base}/evidence", json=evidence, headers=agent).status_code == 200  # a retry
    done = {"lease_epoch": epoch, "result": {"summary": "ok"}}
    assert client.post(f"{base}/complete", json=done, headers=agent).status_code == 200
    retried = client.post(f"{base}/complete", json=done, headers=agent)  # a retry answers as the first
    assert retried.status_code == 200, retried.text
    # A person's moves are audited, but are no agent's actions.
    assert client.post(f"{base}/transition", json={"to": "done"}, headers=pm).status_code == 200

    trace = client.get(f"{base}/trace", headers=pm)
    assert trace.status_code == 200, trace.text
    body = trace.json()
    assert [g["code"] for g in body["goals"]] == ["GOAL-FINSERV-001"]
    assert body["unregisteredGoals"] == ["GOAL-UNREG-1"]
    expected = [action_id(item_id, "a1", n) for n in (1, 2, 3, 4)]
    assert [a["actionId"] for a in body["actions"]] == expected
    assert expected[0] == f"ACT-{item_id}-a1-001"
    assert [a["kind"] for a in body["actions"]] == ["claimed", "started", "evidence", "completed"]
    assert [(a["agentId"], a["sequence"]) for a in body["actions"]] == [("a1", n) for n in (1, 2, 3, 4)]

    history = client.get(f"{base}/history", headers=pm).json()
    output_digest = next(e["details"]["result_sha256"] for e in history if e["action"] == "completed")
    with sessions(client)() as session:
        evidence_digest = session.scalars(select(EvidenceRow.body_hash).where(EvidenceRow.item_id == item_id)).one()
    artifacts = {a["artifactType"]: a for a in body["artifacts"]}
    assert artifacts["evidence"]["artifactId"] == artifact_id(expected[2], "evidence", evidence_digest)
    assert artifacts["evidence"]["artifactId"].endswith(f"-evidence-{evidence_digest[:6].upper()}")
    assert artifacts["evidence"]["ref"] == "ev-1"
    assert artifacts["output"]["artifactId"] == artifact_id(expected[3], "output", output_digest)
    assert artifacts["output"]["artifactId"] == f"ART-{expected[3]}-output-{output_digest[:6].upper()}"
    assert len(body["artifacts"]) == 2

    # The chain validates whole.
    report = validate(client, pm, itemId=item_id)
    assert report["checks"]["workItemToActionLinkage"]["passed"] is True
    assert report["checks"]["actionToArtifactLinkage"]["passed"] is True
    assert report["checks"]["deterministicIds"]["passed"] is True
    # One item's goal check: the code it names that is not registered.
    assert report["checks"]["goalToWorkItemLinkage"]["orphanedGoals"] == ["GOAL-UNREG-1"]
    assert report["overallStatus"] == "incomplete"


def test_a_second_agent_numbers_its_own_actions(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm")
    a1, a2 = token("agent:a1", scopes=AGENT_SCOPES), token("agent:a2", scopes=AGENT_SCOPES)
    item_id = agent_item(client, pm)
    base = f"/api/v1/work-items/{item_id}"
    epoch = client.post(f"{base}/claim", headers=a1).json()["lease_epoch"]
    assert client.post(f"{base}/release", json={"lease_epoch": epoch}, headers=a1).status_code == 200
    assert client.post(f"{base}/claim", headers=a2).status_code == 200
    ids = [a["actionId"] for a in client.get(f"{base}/trace", headers=pm).json()["actions"]]
    assert ids == [action_id(item_id, "a1", 1), action_id(item_id, "a2", 1)]


def test_the_trace_of_another_tenants_item_is_a_404(client: TestClient, token: TokenFactory) -> None:
    pm, globex = token("user:pm"), token("user:g", tenant="globex")
    item_id = agent_item(client, pm)
    theirs = client.get(f"/api/v1/work-items/{item_id}/trace", headers=globex)
    missing = client.get("/api/v1/work-items/WI-ACME-TASK-20990101-0000000000/trace", headers=globex)
    assert theirs.status_code == missing.status_code == 404
    checked = client.get("/api/v1/traceability/validate", params={"itemId": item_id}, headers=globex)
    assert checked.status_code == 404


def test_validation_finds_each_kind_of_broken_link(client: TestClient, token: TokenFactory) -> None:
    pm, agent, globex = token("user:pm"), token("agent:a1", scopes=AGENT_SCOPES), token("user:g", tenant="globex")
    fresh = validate(client, pm)
    assert fresh["overallStatus"] == "complete" and fresh["recommendedActions"] == []
    assert fresh["validationId"].startswith("VAL-") and fresh["tenant"] == "acme"

    # An active goal nobody works on: incomplete, not broken. A retired one is not asked for.
    client.post("/api/v1/goals", json=goal(), headers=pm)
    client.post("/api/v1/goals", json=goal("GOAL-OLD-1", status="retired"), headers=pm)
    gap = validate(client, pm)
    assert gap["checks"]["goalToWorkItemLinkage"] == {
        "passed": False,
        "orphanedGoals": ["GOAL-FINSERV-001"],
        "orphanedGoalsCount": 1,
    }
    assert gap["overallStatus"] == "incomplete" and len(gap["recommendedActions"]) == 1
    item_id = agent_item(client, pm, related_goals=["GOAL-FINSERV-001"])
    assert validate(client, pm)["overallStatus"] == "complete"
    # Another tenant's validation sees none of it.
    assert "acme" not in client.get("/api/v1/traceability/validate", headers=globex).text.lower()

    base = f"/api/v1/work-items/{item_id}"
    epoch = client.post(f"{base}/claim", headers=agent).json()["lease_epoch"]
    assert client.post(f"{base}/start", json={"lease_epoch": epoch}, headers=agent).status_code == 200
    assert client.post(f"{base}/complete", json={"lease_epoch": epoch, "result": 1}, headers=agent).status_code == 200
    assert validate(client, pm)["overallStatus"] == "complete"

    completed = action_id(item_id, "a1", 3)
    with sessions(client).begin() as session:
        session.execute(delete(ArtifactRow).where(ArtifactRow.action_id == completed))
    report = validate(client, pm)
    assert report["checks"]["actionToArtifactLinkage"]["orphanedActions"] == [completed]
    assert report["overallStatus"] == "broken"

    with sessions(client).begin() as session:
        session.execute(delete(AgentActionRow).where(AgentActionRow.id == completed))
        # An action row that is not what its parts build.
        session.execute(
            insert(ACTIONS).values(
                id="ACT-bogus", tenant="acme", item_id=item_id, agent_id="a9", sequence=1, kind="claimed", at=utcnow()
            )
        )
    report = validate(client, pm)
    # a1 has three audited actions and two actions now; a9's bogus action does not stand for a1's.
    assert report["checks"]["workItemToActionLinkage"]["orphanedWorkItems"] == [item_id]
    assert report["checks"]["deterministicIds"]["invalidFormats"] == ["ACT-bogus"]
    assert report["checks"]["deterministicIds"]["passed"] is False

    # A gate a person had to sign off, passed with no approval; a failed compensation with no remediation.
    with sessions(client).begin() as session:
        unapproved_gate(session, item_id, "user:pm", policy=None, hitl=True)
        session.execute(
            insert(COMPENSATIONS).values(
                id="run-1",
                item_id=item_id,
                tenant="acme",
                saga_id="saga-1",
                idempotence_key="k",
                request_hash="h",
                status="failed",
                requested_by="user:pm",
                from_status="done",
                created_at=utcnow(),
                ended_at=utcnow(),
            )
        )
    report = validate(client, pm)
    assert report["checks"]["approvalTraceability"]["missingApprovals"] == [item_id]
    assert report["checks"]["compensationTraceability"]["incompleteCompensations"] == ["run-1"]
    # The completion action went with its artifact: no orphaned action is left; four checks fail.
    assert report["checks"]["actionToArtifactLinkage"]["passed"] is True
    assert report["overallStatus"] == "broken" and len(report["recommendedActions"]) == 4
    # One item's validation sees the same; another item's chain is whole.
    assert validate(client, pm, itemId=item_id)["checks"]["approvalTraceability"]["passed"] is False
    other = agent_item(client, pm, related_goals=["GOAL-FINSERV-001"])
    assert validate(client, pm, itemId=other)["overallStatus"] == "complete"
    # A gate passed under a policy version with approval steps, naming no approval (no human in the loop).
    gated = agent_item(client, pm, related_goals=["GOAL-FINSERV-001"])
    with sessions(client).begin() as session:
        session.add(
            PolicyRow(
                tenant="acme",
                id="pol-1",
                version=1,
                is_latest=True,
                body={"id": "pol-1", "approvalSteps": [{"role": "lead"}]},
                body_hash="x",
                created_by="user:co",
            )
        )
        unapproved_gate(session, gated, "user:pm", policy="pol-1", policy_version=1, hitl=False)
    assert validate(client, pm, itemId=gated)["checks"]["approvalTraceability"]["missingApprovals"] == [gated]
    # Globex's own validation is untouched by acme's breakage.
    assert validate(client, globex)["overallStatus"] == "complete"


def test_lists_are_capped_and_counted(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm")
    now = utcnow()
    rows = [
        {
            "tenant": "acme",
            "code": f"GOAL-BULK-{n:03d}",
            "title": "t",
            "description": "",
            "status": "active",
            "created_by": "user:pm",
            "created_at": now,
        }
        for n in range(105)
    ]
    with sessions(client).begin() as session:
        session.execute(insert(GOALS), rows)
    check = validate(client, pm)["checks"]["goalToWorkItemLinkage"]
    assert len(check["orphanedGoals"]) == 100 and check["orphanedGoalsCount"] == 105
    assert check["orphanedGoals"][0] == "GOAL-BULK-000"


def test_validation_refuses_bad_input(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm")
    too_long = client.get("/api/v1/traceability/validate", params={"itemId": "W" * 200}, headers=pm)
    assert too_long.status_code == 422 and "itemId" in str(error(too_long)["details"])
    unknown = client.get("/api/v1/traceability/validate", params={"item": "x"}, headers=pm)
    assert unknown.status_code == 422
    # An all-tenant token validates one item, not every tenant at once.
    operator = token("user:op", tenant="*")
    refused = client.get("/api/v1/traceability/validate", headers=operator)
    assert refused.status_code == 422 and error(refused)["details"][0]["path"] == "itemId"
    item_id = agent_item(client, pm)
    assert validate(client, operator, itemId=item_id)["tenant"] == "acme"
    with sessions(client)() as session:
        assert session.get(WorkItem, item_id) is not None


def test_a_claim_from_the_queue_is_an_action_too(client: TestClient, token: TokenFactory) -> None:
    # On PostgreSQL claim-next is one statement that writes its audit row itself: its action too.
    pm, agent = token("user:pm"), token("agent:a1", scopes=AGENT_SCOPES)
    item_id = agent_item(client, pm)
    taken = client.post("/api/v1/queues/claim-next", headers=agent)
    assert taken.status_code == 200 and taken.json()["id"] == item_id, taken.text
    actions = client.get(f"/api/v1/work-items/{item_id}/trace", headers=pm).json()["actions"]
    assert [(a["actionId"], a["kind"]) for a in actions] == [(action_id(item_id, "a1", 1), "claimed")]
    assert validate(client, pm)["overallStatus"] == "complete"


def test_a_gate_passed_under_the_tenants_own_policy_is_not_held_to_the_operators_of_the_same_id(
    client: TestClient, token: TokenFactory
) -> None:
    # The operators share a policy with two approval steps; acme has its own of the same id and
    # version with none, and its own is the one its gate applies: no approval was needed.
    operator = token("user:ops", tenant="*", scopes=["policies:write", "policies:read"])
    assert client.post("/api/v1/policies", json={**POLICY, "checks": []}, headers=operator).status_code == 201
    admin = token("user:compliance", scopes=["policies:write", "policies:read"])
    own = {**POLICY, "checks": [], "approvalSteps": []}
    assert client.post("/api/v1/policies", json=own, headers=admin).status_code == 201
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change(), headers=alice).json()["id"]
    to_review(client, alice, item_id)
    assert (
        client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=alice).status_code == 200
    )
    report = client.get("/api/v1/traceability/validate", headers=alice).json()
    assert report["checks"]["approvalTraceability"]["missingApprovals"] == []
    # A passage recorded before it named whose policy it was: the gate's own resolution (the tenant's).
    with sessions(client).begin() as session:
        row = session.scalars(select(EVENTS.c.id).where(EVENTS.c.item_id == item_id, EVENTS.c.action == "gate_passed"))
        event_id = row.one()
        details = session.execute(select(EVENTS.c.details).where(EVENTS.c.id == event_id)).scalar_one()
        session.execute(
            EVENTS.update()
            .where(EVENTS.c.id == event_id)
            .values(details={k: v for k, v in details.items() if k != "policy_tenant"})
        )
    report = client.get("/api/v1/traceability/validate", headers=alice).json()
    assert report["checks"]["approvalTraceability"]["missingApprovals"] == []


def test_agents_work_audited_before_recording_began_is_not_judged(client: TestClient, token: TokenFactory) -> None:
    # An agent's claim audited before the upgrade that made the tables: no action exists for it.
    pm = token("user:pm")
    item_id = client.post("/api/v1/work-items", json=task(), headers=pm).json()["id"]
    with sessions(client).begin() as session:
        epoch = session.execute(select(TRACE_EPOCH.c.started_at)).scalar_one()
        session.execute(
            insert(EVENTS).values(
                item_id=item_id, tenant="acme", action="claimed", actor="agent:old-bot", details={}, at=epoch
            )
        )
        session.execute(TRACE_EPOCH.update().values(started_at=epoch + timedelta(seconds=1)))
    report = client.get("/api/v1/traceability/validate", headers=pm).json()
    assert report["checks"]["workItemToActionLinkage"]["orphanedWorkItems"] == []
    # Had recording begun before it, the action would be missing.
    with sessions(client).begin() as session:
        session.execute(TRACE_EPOCH.update().values(started_at=epoch - timedelta(seconds=1)))
    report = client.get("/api/v1/traceability/validate", headers=pm).json()
    assert report["checks"]["workItemToActionLinkage"]["orphanedWorkItems"] == [item_id]
    assert report["overallStatus"] == "broken"


def test_a_goal_can_be_retired_renamed_and_brought_back_but_not_recoded(
    client: TestClient, token: TokenFactory
) -> None:
    planner = token("user:planner", scopes=("work:read", "work:write"))
    made = client.post("/api/v1/goals", json={"code": "GOAL-OPS-001", "title": "Quiet nights"}, headers=planner)
    assert made.status_code == 201, made.text
    report = client.get("/api/v1/traceability/validate", headers=planner).json()
    assert report["checks"]["goalToWorkItemLinkage"]["orphanedGoals"] == ["GOAL-OPS-001"]
    retired = client.patch(
        "/api/v1/goals/GOAL-OPS-001", json={"status": "retired", "title": "Quieter"}, headers=planner
    )
    assert retired.status_code == 200, retired.text
    assert (retired.json()["status"], retired.json()["title"]) == ("retired", "Quieter")
    report = client.get("/api/v1/traceability/validate", headers=planner).json()
    assert report["checks"]["goalToWorkItemLinkage"]["orphanedGoals"] == [] and report["overallStatus"] == "complete"
    back = client.patch("/api/v1/goals/GOAL-OPS-001", json={"status": "active"}, headers=planner)
    assert back.status_code == 200 and back.json()["status"] == "active"
    # Bad input names the field and changes nothing; a code is never changed; another tenant's is a 404.
    for body, field in (({"code": "GOAL-OPS-002"}, "code"), ({"status": "gone"}, "status"), ({"title": None}, "title")):
        refused = client.patch("/api/v1/goals/GOAL-OPS-001", json=body, headers=planner)
        assert refused.status_code == 422, refused.text
        assert field in refused.text
    other = token("user:g", scopes=("work:read", "work:write"), tenant="globex")
    assert client.patch("/api/v1/goals/GOAL-OPS-001", json={"status": "retired"}, headers=other).status_code == 404
    assert client.get("/api/v1/goals/GOAL-OPS-001", headers=planner).json()["status"] == "active"


def test_a_goal_belongs_to_one_tenant_not_to_every_tenant(client: TestClient, token: TokenFactory) -> None:
    operator = token("user:ops", tenant="*", scopes=("work:read", "work:write"))
    body = {"code": "GOAL-ALL-001", "title": "Everyone's", "tenant": "*"}
    refused = client.post("/api/v1/goals", json=body, headers=operator)
    assert refused.status_code == 422, refused.text
    assert error(refused)["details"][0]["path"] == "tenant"
    assert client.post("/api/v1/goals", json={**body, "tenant": "acme"}, headers=operator).status_code == 201


def test_an_operator_names_the_tenant_of_a_goal_code_more_than_one_tenant_has(
    client: TestClient, token: TokenFactory
) -> None:
    acme, globex = token("user:pm"), token("user:g", tenant="globex")
    assert client.post("/api/v1/goals", json=goal(), headers=acme).status_code == 201
    operator = token("user:op", tenant="*")
    url = "/api/v1/goals/GOAL-FINSERV-001"
    # One tenant has the code: it is that tenant's.
    assert client.get(url, headers=operator).json()["tenant"] == "acme"
    assert client.post("/api/v1/goals", json=goal(title="theirs"), headers=globex).status_code == 201
    # Two have it: which one is asked, never picked, and an edit changes neither.
    for response in (
        client.get(url, headers=operator),
        client.patch(url, json={"status": "retired"}, headers=operator),
    ):
        assert response.status_code == 422 and error(response)["details"][0]["path"] == "tenant", response.text
    assert client.get(url, headers=acme).json()["status"] == client.get(url, headers=globex).json()["status"]
    retired = client.patch(f"{url}?tenant=globex", json={"status": "retired"}, headers=operator)
    assert retired.status_code == 200 and retired.json()["tenant"] == "globex"
    assert client.get(f"{url}?tenant=globex", headers=operator).json()["status"] == "retired"
    assert client.get(url, headers=acme).json()["status"] == "active"
    assert client.get(f"{url}?tenant=initech", headers=operator).status_code == 404
    # A tenant's token names only its own tenant.
    assert client.get(f"{url}?tenant=globex", headers=acme).status_code == 403
