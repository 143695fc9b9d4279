"""Sagas that wait for people and agents: work-item steps on a real stack (orchestrator, API and
Celery workers as subprocesses), on SQLite and PostgreSQL, with messages delivered once and twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from models.principal import PrincipalType
from orchestrator.sagas.timeline import render_saga
from orchestrator.work.tokens import create_token
from orchestrator.work.webhooks import CACHE_TTL_S
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.templates import (
    AGENT_REVIEW,
    APPROVAL,
    CALL_CUSTOMER,
    DEADLINE,
    FAN_OUT,
    LATE_APPROVAL,
    SAGA_DEADLINE,
    THREE_STEPS,
)
from tests.support import RedisTarget, consistently, eventually
from tests.webhook_receiver import Receiver, webhook_receiver
from workers.client import ApiError, WorkyardClient

ADMIN = "it-admin-token"


class Stack:
    def __init__(self, harness: Harness):
        self.h = harness
        self.url = harness.settings.api_url
        self.admin = WorkyardClient(self.url, ADMIN)
        self.clients = [self.admin]

    def client(self, principal: str, **grants: Any) -> WorkyardClient:
        kind, ident = principal.split(":")
        with self.h.wiring.sessions.begin() as session:
            issued = create_token(
                session,
                principal_type=PrincipalType(kind),
                principal_id=ident,
                tenant="acme",
                scopes=["work:read", "work:claim"],
                **grants,
            )
        client = WorkyardClient(self.url, issued.secret)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def item_of(self, saga_id: str, step: str, attempt: int = 1, phase: str = "forward") -> Any:
        def find() -> Any:
            for item in self.admin.list_work_items(saga_id=saga_id).items:
                link = item.saga
                if link and (link.step, link.attempt, link.phase) == (step, attempt, phase):
                    return item
            return None

        return eventually(find, what=f"the work item of {step} (attempt {attempt}, {phase})")


STACKS = [
    pytest.param(
        (backend, twice),
        marks=[pytest.mark.postgres] if backend == "postgres" else [],
        id=f"{backend}-{'twice' if twice else 'once'}",
    )
    for backend in ("sqlite", "postgres")
    for twice in (False, True)
]


@pytest.fixture(scope="module", params=STACKS)
def stack(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    backend, twice = request.param
    tmp = tmp_path_factory.mktemp("waiting")
    for url in database_url(str(backend), tmp):
        settings = stack_settings(
            tmp,
            url,
            redis_target,
            admin_token=ADMIN,
            fault_duplicate_delivery=twice,
            webhook_allow_private_targets=True,  # the webhook receiver listens on 127.0.0.1
        )
        harness = Harness(settings, redis_target, api=True)
        try:
            harness.start()
            for template in (
                FAN_OUT,
                THREE_STEPS,
                APPROVAL,
                AGENT_REVIEW,
                CALL_CUSTOMER,
                DEADLINE,
                LATE_APPROVAL,
                SAGA_DEADLINE,
            ):
                harness.register(template)
            stack = Stack(harness)
            yield stack
            stack.close()
        finally:
            harness.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _timeline(saga: Any) -> list[tuple[str, str, str]]:
    return [(a.step_name, a.phase, a.outcome) for a in saga.attempts]


def test_an_approved_step_resumes_the_saga_with_the_items_result(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.approval", {"tag": tag})
    item = stack.item_of(saga_id, "approve")
    assert item.title == f"Approve order {tag}" and item.payload["first"] == {"step": "one", "calls": 1}
    assert item.status == "todo" and item.lifecycle == "step" and item.offer.group == "approvers"
    outsider = stack.client("user:bo")
    with pytest.raises(ApiError) as refused:
        outsider.claim(item)
    assert refused.value.status == 403
    ann = stack.client("user:ann", groups=["approvers"])
    claimed = ann.claim(item)
    # An operator sees what the saga waits on, and who holds it.
    shown = render_saga(stack.h.saga(saga_id))
    assert f"{item.id}  todo" in shown and "approve" in shown and "user:ann" in shown
    done = ann.complete(claimed, {"approved": True, "by": "ann"})
    assert done.status == "done"
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "completed"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("approve", "forward", "succeeded"),
        ("three", "forward", "succeeded"),
    ]
    assert saga.results["approve"] == {"approved": True, "by": "ann"}
    assert stack.h.effects(tag) == ["one", "three"]
    assert saga.attempts[1].worker == "user:ann"


def test_a_rejected_step_compensates_in_reverse_order(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.approval", {"tag": tag})
    item = stack.item_of(saga_id, "approve")
    ann = stack.client("user:ann", groups=["approvers"])
    ann.fail(ann.claim(item), "too expensive")
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "compensated"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("approve", "forward", "failed"),
        ("one", "compensate", "succeeded"),
    ]
    assert "too expensive" in (saga.error or "")
    assert stack.h.effects(tag) == ["one", "one:compensate"]


def test_a_silent_agent_loses_the_item_to_another_and_its_late_completion_is_refused(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.agent_review", {"tag": tag})
    item = stack.item_of(saga_id, "review")
    silent = stack.client("agent:silent", capabilities=["review"])
    diligent = stack.client("agent:diligent", capabilities=["review"])
    held = silent.start(silent.claim(item, ttl_s=1.0))
    # No heartbeats: the orchestrator's lease sweep puts the item back in the queue.
    back = eventually(
        lambda: next((i for i in diligent.available().items if i.id == item.id and i.claim is None), None),
        timeout=15,
        what="the lease sweep to return the item to the queue",
    )
    taken = diligent.claim(back, ttl_s=30)
    diligent.complete(taken, {"verdict": "ok"})
    with pytest.raises(ApiError) as late:
        silent.complete(held, {"verdict": "late"})
    assert late.value.status == 409
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "completed" and saga.results["review"] == {"verdict": "ok"}
    actions = [(e.action, e.actor) for e in stack.admin.history(item)]
    assert ("lease_expired", "system") in actions
    assert actions.index(("lease_expired", "system")) < actions.index(("claimed", "agent:diligent"))
    assert stack.admin.get_work_item(item).result == {"verdict": "ok"}


def test_a_compensation_can_be_a_work_item(stack: Stack) -> None:
    tag = _tag()
    behaviour = {"three": {"fail_always": True, "retryable": False}}
    saga_id = stack.h.submit("it.call_customer", {"tag": tag, "behaviour": behaviour})
    call = stack.item_of(saga_id, "two", phase="compensate")
    assert call.title == f"Call the customer about {tag}"
    # The saga waits for the person before it undoes step one: strict reverse order.
    consistently(lambda: stack.h.effects(tag) == ["one", "two"], duration=0.5, what="step one left undone")
    agent = stack.client("user:sam", groups=["support"])
    agent.complete(agent.claim(call), {"called": True})
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "compensated"
    assert _timeline(saga)[-2:] == [("two", "compensate", "succeeded"), ("one", "compensate", "succeeded")]
    assert stack.h.effects(tag) == ["one", "two", "one:compensate"]


def test_a_missed_deadline_cancels_the_item_and_the_retry_opens_another(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.deadline", {"tag": tag})
    first = stack.item_of(saga_id, "sign")
    second = stack.item_of(saga_id, "sign", attempt=2)
    assert stack.admin.get_work_item(first).status == "cancelled"
    signer = stack.client("user:sue", groups=["signers"])
    with pytest.raises(ApiError) as too_late:
        signer.claim(first)
    assert too_late.value.status == 409
    signer.complete(signer.claim(second), {"signed": True})
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "completed"
    assert _timeline(saga) == [("sign", "forward", "timed_out"), ("sign", "forward", "succeeded")]


def test_a_saga_past_its_deadline_stops_waiting_and_compensates(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.saga_deadline", {"tag": tag})
    item = stack.item_of(saga_id, "sign")
    saga = stack.h.wait_final(saga_id, timeout=30)
    assert saga.state == "compensated"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("sign", "forward", "timed_out"),
        ("one", "compensate", "succeeded"),
    ]
    assert "deadline of 1500 ms" in (saga.error or "")
    assert stack.admin.get_work_item(item).status == "cancelled"
    assert stack.h.effects(tag) == ["one", "one:compensate"]


def test_an_sla_breach_that_cancels_the_item_compensates_the_saga(stack: Stack) -> None:
    tag = _tag()
    saga_id = stack.h.submit("it.late_approval", {"tag": tag})
    item = stack.item_of(saga_id, "approve")
    saga = stack.h.wait_final(saga_id, timeout=30)
    assert saga.state == "compensated"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("approve", "forward", "failed"),
        ("one", "compensate", "succeeded"),
    ]
    late = stack.admin.get_work_item(item)
    assert late.status == "cancelled" and late.sla_breach_count == 1
    actions = [e.action for e in stack.admin.history(item)]
    assert actions.count("sla_breached") == 1 and actions[-1] == "cancelled"


ITEM = {"title": "t", "description": "d", "offer": {"type": "agent"}}


def test_a_template_with_a_bad_work_item_step_is_refused_and_nothing_is_written(stack: Stack) -> None:
    before = stack.h.row_counts()
    bad_steps = [
        ({"name": "x", "kind": "work_item", "work_item": {"title": "t", "tenant": "acme"}}, "work_item.offer"),
        (
            {
                "name": "x",
                "kind": "work_item",
                "work_item": {"type": "nope", "title": "t", "offer": {"type": "agent"}},
            },
            "work_item.type",
        ),
        ({"name": "x", "kind": "work_item"}, "steps.0"),
        (
            {
                "name": "x",
                "kind": "work_item",
                "work_item": {"title": "t", "offer": {"type": "agent"}},
            },
            "steps.0.work_item.(root)",  # a task needs a description or a payload
        ),
        (
            {"name": "x", "kind": "work_item", "work_item": {**ITEM, "sla": {"target_ms": -1}}},
            "steps.0.work_item.sla.target_ms",
        ),
        (
            {
                "name": "x",
                "kind": "work_item",
                "work_item": {**ITEM, "sla": {"target_ms": 9, "breach_action": "escalate", "breach_to": "ghosts"}},
            },
            "steps.0.work_item.sla",
        ),
    ]
    for step, path in bad_steps:
        with pytest.raises(ApiError) as refused:
            stack.admin.add_template({"name": "it.bad", "version": "1.0.0", "steps": [step]})
        assert refused.value.status == 422
        assert any(path in d["path"] for d in refused.value.details), refused.value.details
    assert stack.h.row_counts() == before


def test_saga_outcomes_are_posted_to_operator_webhooks(stack: Stack) -> None:
    with webhook_receiver() as receiver:
        response = stack.admin._http.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["saga.completed", "saga.compensated"]}
        )
        assert response.status_code == 201 and response.json()["tenant"] == "*"
        seen_by_orchestrator(stack, receiver)
        done = stack.h.submit("it.three", {"tag": _tag()})
        undone = stack.h.submit(
            "it.three", {"tag": _tag(), "behaviour": {"three": {"fail_always": True, "retryable": False}}}
        )
        stack.h.wait_final(done)
        stack.h.wait_final(undone)
        events = eventually(
            lambda: (
                (
                    got := {
                        (json.loads(r.body)["data"]["saga"]["id"], r.headers["x-workyard-event"])
                        for r in receiver.requests
                    }
                )
                >= {(done, "saga.completed"), (undone, "saga.compensated")}
                and got
            ),
            what="both saga outcomes posted",
        )
        assert events

        # Also where every message is delivered twice: a saga finishes once, so one POST each.
        def posted() -> tuple[int, int]:
            ids = [json.loads(r.body)["data"]["saga"]["id"] for r in receiver.requests]
            return ids.count(done), ids.count(undone)

        consistently(lambda: posted() == (1, 1), duration=1.0, what="one POST per saga outcome")


def seen_by_orchestrator(stack: Stack, receiver: Receiver) -> None:
    """Wait until the orchestrator has looked its webhooks up again (it caches them for
    ``CACHE_TTL_S``), seen from outside: a probe saga's outcome is posted to ``receiver``."""
    probes: list[str] = []

    def probe_posted() -> bool:
        posted = {json.loads(r.body)["data"]["saga"]["id"] for r in receiver.requests}
        if posted & set(probes):
            return True
        if not probes or stack.h.saga(probes[-1]).state.terminal:
            probes.append(stack.h.submit("it.three", {"tag": _tag()}))
        return False

    eventually(probe_posted, timeout=30 + CACHE_TTL_S, what="the orchestrator to post to the new webhook")


def _members(stack: Stack, saga_id: str, count: int, phase: str = "forward") -> list[Any]:
    def found() -> list[Any] | None:
        items = [
            i
            for i in stack.admin.list_work_items(saga_id=saga_id, limit=500).items
            if i.saga and i.saga.step == "review" and i.saga.phase == phase
        ]
        return sorted(items, key=lambda i: i.saga.member) if len(items) == count else None

    return eventually(found, what=f"{count} {phase} members of the fan-out")


def test_a_fan_out_resumes_at_its_kth_completion_and_cancels_the_rest(stack: Stack) -> None:
    tag = _tag()
    documents = [f"doc-{n}" for n in range(20)]
    saga_id = stack.h.submit("it.fan_out", {"tag": tag, "documents": documents})
    items = _members(stack, saga_id, 20)
    assert [i.title for i in items[:2]] == ["Review doc-0 (0)", "Review doc-1 (1)"]
    reviewer = stack.client("agent:reviewer", capabilities=["review"])
    for item in items[:14]:
        reviewer.complete(reviewer.claim(item), {"ok": item.payload["document"]})
    consistently(
        lambda: stack.h.saga(saga_id).state == "running" and stack.h.effects(tag) == ["one"],
        duration=0.5,
        what="the fan-out waiting for its 15th completion",
    )
    reviewer.complete(reviewer.claim(items[14]), {"ok": items[14].payload["document"]})
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "completed" and stack.h.effects(tag) == ["one", "three"]
    assert saga.results["review"] == [{"ok": d} for d in documents[:15]] + [None] * 5
    statuses = [stack.admin.get_work_item(i).status for i in items]
    assert statuses == ["done"] * 15 + ["cancelled"] * 5
    with pytest.raises(ApiError) as late:
        reviewer.claim(items[19])
    assert late.value.status == 409


def test_a_failed_fan_out_compensates_each_done_member_then_the_steps_before(stack: Stack) -> None:
    tag = _tag()
    documents = [f"doc-{n}" for n in range(20)]
    saga_id = stack.h.submit("it.fan_out", {"tag": tag, "documents": documents})
    items = _members(stack, saga_id, 20)
    reviewer = stack.client("agent:reviewer", capabilities=["review"])
    for item in items[:3]:
        reviewer.complete(reviewer.claim(item), {"ok": True})
    for item in items[3:9]:  # the sixth failure leaves 3 done + 11 open < 15 needed
        reviewer.fail(reviewer.claim(item), "unreadable")
    withdrawals = _members(stack, saga_id, 3, phase="compensate")
    assert [w.title for w in withdrawals] == [f"Withdraw the review of doc-{n}" for n in range(3)]
    assert all(stack.admin.get_work_item(i).status == "cancelled" for i in items[9:])
    assert stack.h.effects(tag) == ["one"]  # strict order: step one waits for the withdrawals
    for withdrawal in withdrawals:
        reviewer.complete(reviewer.claim(withdrawal), {"withdrawn": True})
    saga = stack.h.wait_final(saga_id)
    assert saga.state == "compensated"
    assert _timeline(saga)[-3:] == [
        ("review", "forward", "failed"),
        ("review", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    assert "3 of 20 done, 15 needed" in (saga.error or "")
    assert stack.h.effects(tag) == ["one", "one:compensate"]
