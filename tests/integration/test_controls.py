"""An operator's controls of a saga on real workers, on SQLite and PostgreSQL, with messages
delivered once and twice: cancel, terminate, pause and resume, during a running step, while
compensating, after the end; and the API's answers (scope, tenant, reason, audit)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.api import SagaRead
from models.enums import SagaControl
from models.principal import PrincipalType
from models.tables import Timer
from models.work_tables import WorkItem
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.sagas.controls import Controlled, control_saga
from tests.conftest import BACKENDS
from tests.integration.harness import Harness, admin_client, user_token
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _input(tag: str, **behaviour: dict[str, Any]) -> dict[str, Any]:
    return {"tag": tag, "behaviour": behaviour}


def _timeline(saga: SagaRead) -> list[tuple[str, str, str]]:
    return [(a.step_name, a.phase, a.outcome) for a in saga.attempts]


def _control(harness: Harness, saga_id: str, action: SagaControl, reason: str) -> Controlled:
    done = control_saga(harness.wiring.sessions, harness.settings, saga_id, action, actor="user:ops", reason=reason)
    harness.wiring.dispatcher.publish(done.outbox)
    return done


def _handler_started(harness: Harness, tag: str, name: str) -> None:
    eventually(lambda: harness.calls(tag).get(name) == 1, timeout=30, what=f"handler {name} to start")


def _settled_late(harness: Harness, tag: str, effect: str) -> None:
    """Wait until the handler stopped under it has finished (its side effect is made), and a
    while longer: its late report reaches the coordinator, which must change nothing."""
    eventually(lambda: effect in harness.effects(tag), timeout=30, what=f"the late {effect}")
    time.sleep(1.0)


def test_cancel_during_a_running_step_undoes_it_and_what_came_before(harness: Harness) -> None:
    tag = _tag()
    saga_id = harness.submit("it.three", _input(tag, two={"sleep_ms": 2000}))
    _handler_started(harness, tag, "two")
    done = _control(harness, saga_id, SagaControl.cancel, "the customer withdrew the order")
    assert done.detail == {"from": "running", "to": "compensating", "stopped": ["two"]}
    saga = harness.wait_final(saga_id)
    assert saga.state == "cancelled"
    # Two's outcome is unknown (its handler was still running): it is undone too, then one.
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("two", "forward", "cancelled"),
        ("two", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    assert [s.state for s in saga.steps] == ["compensated", "compensated", "pending"]
    assert saga.error == "cancelled by user:ops: the customer withdrew the order during step 'two'"
    assert [(e.actor, e.action, e.reason, e.detail["to"]) for e in saga.audit] == [
        ("user:ops", "cancel", "the customer withdrew the order", "compensating")
    ]
    _settled_late(harness, tag, "two")
    after = harness.saga(saga_id)
    assert (after.state, _timeline(after)) == ("cancelled", _timeline(saga))
    assert "three" not in harness.calls(tag)
    assert sorted(harness.effects(tag)) == sorted(["one", "two", "two:compensate", "one:compensate"])


def test_terminate_during_a_running_step_stops_without_undoing(harness: Harness) -> None:
    tag = _tag()
    saga_id = harness.submit("it.three", _input(tag, two={"sleep_ms": 1500}))
    _handler_started(harness, tag, "two")
    done = _control(harness, saga_id, SagaControl.terminate, "runaway saga")
    assert done.detail == {"from": "running", "to": "terminated", "stopped": ["two"]}
    saga = harness.saga(saga_id)
    assert saga.state == "terminated" and saga.finished_at is not None
    assert _timeline(saga) == [("one", "forward", "succeeded"), ("two", "forward", "cancelled")]
    assert [s.state for s in saga.steps] == ["succeeded", "failed", "pending"]
    _settled_late(harness, tag, "two")
    after = harness.saga(saga_id)
    assert (after.state, _timeline(after)) == ("terminated", _timeline(saga))
    assert harness.effects(tag) == ["one", "two"]  # nothing undone, nothing more done
    assert "three" not in harness.calls(tag)


def test_a_compensating_saga_is_not_cancelled_but_may_be_terminated(harness: Harness) -> None:
    tag = _tag()
    behaviour: dict[str, Any] = {
        "three": {"fail_always": True, "retryable": False},
        "two:compensate": {"sleep_ms": 1500},
    }
    saga_id = harness.submit("it.three", _input(tag, **behaviour))
    _handler_started(harness, tag, "two:compensate")
    with pytest.raises(Conflict, match="compensating already"):
        _control(harness, saga_id, SagaControl.cancel, "too late")
    done = _control(harness, saga_id, SagaControl.terminate, "undo by hand")
    assert done.detail == {"from": "compensating", "to": "terminated", "stopped": ["two"]}
    _settled_late(harness, tag, "two:compensate")
    saga = harness.saga(saga_id)
    assert saga.state == "terminated"
    assert [s.state for s in saga.steps] == ["succeeded", "compensation_failed", "failed"]
    assert "one:compensate" not in harness.calls(tag)  # one's undo never went out
    assert [e.action for e in saga.audit] == ["terminate"]  # the refused cancel left no entry


def test_a_finished_saga_is_neither_cancelled_nor_terminated(harness: Harness) -> None:
    saga_id = harness.submit("it.three", _input(_tag()))
    assert harness.wait_final(saga_id).state == "completed"
    for action in (SagaControl.cancel, SagaControl.terminate, SagaControl.pause, SagaControl.resume):
        with pytest.raises(Conflict, match="completed already"):
            _control(harness, saga_id, action, "late")
    with pytest.raises(Conflict, match="only a saga whose compensation gave up"):
        _control(harness, saga_id, SagaControl.retry_compensation, "late")
    with pytest.raises(Conflict, match="only a saga that ended without completing"):
        _control(harness, saga_id, SagaControl.rerun, "late")
    saga = harness.saga(saga_id)
    assert saga.state == "completed" and saga.audit == []


def test_a_paused_saga_applies_what_is_under_way_and_dispatches_nothing_new(harness: Harness) -> None:
    tag = _tag()
    saga_id = harness.submit("it.three", _input(tag, two={"sleep_ms": 1000}))
    _handler_started(harness, tag, "two")
    done = _control(harness, saga_id, SagaControl.pause, "checking the warehouse")
    assert done.detail == {"from": "running", "to": "paused", "stopped": []}
    with pytest.raises(Conflict, match="paused already"):
        _control(harness, saga_id, SagaControl.pause, "twice")
    _settled_late(harness, tag, "two")
    saga = harness.saga(saga_id)
    # Two's report was applied; three, which would follow, waits.
    assert saga.state == "running" and saga.paused_at is not None
    assert [s.state for s in saga.steps] == ["succeeded", "succeeded", "pending"]
    assert "three" not in harness.calls(tag)

    done = _control(harness, saga_id, SagaControl.resume, "stock confirmed")
    assert done.detail == {"from": "paused", "to": "running", "sent": ["three (forward)"]}
    saga = harness.wait_final(saga_id)
    assert saga.state == "completed" and saga.paused_at is None and saga.paused_ms >= 1000
    assert harness.calls(tag) == {"one": 1, "two": 1, "three": 1}
    assert [e.action for e in saga.audit] == ["pause", "resume"]
    with pytest.raises(Conflict, match="completed already"):
        _control(harness, saga_id, SagaControl.resume, "again")


def test_a_pause_stops_the_sagas_deadline_and_sla_clocks(harness: Harness) -> None:
    name = f"it.clocked.{_tag()}"
    doc = {**THREE_STEPS, "name": name, "deadline_ms": 2500, "sla": {"target_ms": 2500, "warn_at_pct": 50}}
    harness.register(doc)
    tag = _tag()
    saga_id = harness.submit(name, _input(tag, one={"sleep_ms": 500}))
    _handler_started(harness, tag, "one")
    _control(harness, saga_id, SagaControl.pause, "hold")
    # Well past its deadline and SLA target, as the clock on the wall goes.
    time.sleep(3.5)
    saga = harness.saga(saga_id)
    assert saga.state == "running" and saga.sla_warned_at is None and saga.sla_breached_at is None
    assert [s.state for s in saga.steps] == ["succeeded", "pending", "pending"]
    _control(harness, saga_id, SagaControl.resume, "go on")
    saga = harness.wait_final(saga_id)
    # It had used well under half of its time when paused: the rest was enough.
    assert saga.state == "completed" and saga.error is None and saga.sla_breached_at is None
    assert saga.paused_ms >= 3500


def test_resuming_moves_the_clocks_by_the_time_paused(harness: Harness) -> None:
    name = f"it.clocked.{_tag()}"
    harness.register({**THREE_STEPS, "name": name, "deadline_ms": 600_000, "sla": {"target_ms": 300_000}})
    tag = _tag()
    saga_id = harness.submit(name, _input(tag, one={"sleep_ms": 3000}))
    _handler_started(harness, tag, "one")

    def clocks() -> dict[str, Any]:
        with harness.wiring.sessions() as session:
            return {t.kind: t.due_at for t in session.scalars(select(Timer).where(Timer.saga_id == saga_id))}

    before = clocks()
    assert set(before) == {"saga_deadline", "saga_sla_breach"}
    _control(harness, saga_id, SagaControl.pause, "hold")
    assert all(due.year > 3000 for due in clocks().values())  # parked: none comes due
    time.sleep(0.5)
    _control(harness, saga_id, SagaControl.resume, "go on")
    paused_ms = harness.saga(saga_id).paused_ms
    assert paused_ms >= 500
    after = clocks()
    for kind, due in before.items():
        assert (after[kind] - due).total_seconds() * 1000 == pytest.approx(paused_ms, abs=1), kind
    _control(harness, saga_id, SagaControl.terminate, "done with it")


def test_cancelling_a_paused_saga_undoes_it_without_sending_what_was_held(harness: Harness) -> None:
    tag = _tag()
    saga_id = harness.submit("it.three", _input(tag, one={"sleep_ms": 500}))
    _handler_started(harness, tag, "one")
    _control(harness, saga_id, SagaControl.pause, "hold")
    _settled_late(harness, tag, "one")
    _control(harness, saga_id, SagaControl.cancel, "not wanted")
    saga = harness.wait_final(saga_id)
    assert saga.state == "cancelled" and saga.paused_at is None
    assert _timeline(saga) == [("one", "forward", "succeeded"), ("one", "compensate", "succeeded")]
    assert "two" not in harness.calls(tag)


def test_a_compensation_that_gave_up_is_retried_after_a_fix(harness: Harness) -> None:
    tag = _tag()
    # Two's undo fails on its first four calls (its whole budget), then works: the "fix".
    behaviour: dict[str, Any] = {
        "three": {"fail_always": True, "retryable": False},
        "two:compensate": {"fail_times": 4},
    }
    saga = harness.wait_final(harness.submit("it.three", _input(tag, **behaviour)))
    assert saga.state == "compensation_failed"
    with pytest.raises(Conflict, match="only a saga whose compensation gave up"):
        _control(
            harness,
            harness.wait_final(harness.submit("it.three", _input(_tag()))).id,
            SagaControl.retry_compensation,
            "x",
        )

    done = _control(harness, saga.id, SagaControl.retry_compensation, "the ledger is reachable again")
    assert done.detail["to"] == "compensating" and done.detail["sent"] == ["two (compensate)"]
    assert len(done.detail["closed"]) == 1
    saga = harness.wait_final(saga.id)
    assert saga.state == "compensated"
    assert [s.state for s in saga.steps] == ["compensated", "compensated", "failed"]
    assert harness.calls(tag)["two:compensate"] == 5 and harness.calls(tag)["one:compensate"] == 1
    assert [a.outcome for a in saga.attempts if a.step_name == "two" and a.phase == "compensate"] == [
        "failed",
        "failed",
        "failed",
        "failed",
        "succeeded",
    ]
    with harness.wiring.sessions() as session:
        items = session.scalars(select(WorkItem).where(WorkItem.saga_id == saga.id)).all()
    # The remediation it opened was closed by the retry, with who and why.
    assert [(i.id, i.type, i.status, i.is_open) for i in items] == [
        (done.detail["closed"][0], "remediation", "done", False)
    ]
    assert items[0].reason is not None and "the ledger is reachable again" in items[0].reason
    assert [e.action for e in saga.audit] == ["retry_compensation"]


def _rerun(harness: Harness, saga_id: str, **options: Any) -> Controlled:
    done = control_saga(
        harness.wiring.sessions,
        harness.settings,
        saga_id,
        SagaControl.rerun,
        actor="user:ops",
        reason="fixed",
        **options,
    )
    harness.wiring.dispatcher.publish(done.outbox)
    return done


def test_a_compensated_saga_reruns_every_undone_step_under_keys_of_its_own(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.three", _input(tag, three={"fail_always": True, "retryable": False})))
    assert saga.state == "compensated"
    patch = {"behaviour": {"three": None}}  # the fix: three no longer fails

    planned = _rerun(harness, saga.id, from_step="three", input_patch=patch, dry_run=True).detail
    # One and two were undone: asked to rerun from three, the rerun starts at one.
    assert planned["start"] == "one" and [s["runs"] for s in planned["steps"]] == [True, True, True]
    assert "its effect was undone" in planned["steps"][0]["why"]
    assert planned["input"] == {"tag": tag, "behaviour": {}}
    unchanged = harness.saga(saga.id)
    assert unchanged.state == "compensated" and unchanged.audit == [] and unchanged.input == saga.input

    _rerun(harness, saga.id, from_step="three", input_patch=patch)
    rerun = harness.wait_final(saga.id)
    assert rerun.state == "completed" and rerun.error is None and rerun.input == {"tag": tag, "behaviour": {}}
    assert harness.calls(tag) == {"one": 2, "two": 2, "three": 2, "two:compensate": 1, "one:compensate": 1}
    # The earlier run's attempts stay in the timeline; the rerun's are numbered on.
    assert [(a.step_name, a.phase, a.attempt, a.outcome) for a in rerun.attempts][-3:] == [
        ("one", "forward", 2, "succeeded"),
        ("two", "forward", 2, "succeeded"),
        ("three", "forward", 2, "succeeded"),
    ]
    keys = [k.decode() if isinstance(k, bytes) else k for k in harness.books.lrange(f"test:keys:{tag}", 0, -1)]
    assert f"one={saga.id}:one:rerun1" in keys and f"three={saga.id}:three:rerun1" in keys
    assert [e.action for e in rerun.audit] == ["rerun"] and rerun.audit[0].detail["input_patch"] == patch


def test_a_saga_whose_compensation_gave_up_reruns_from_the_step_that_was_not_undone(harness: Harness) -> None:
    tag = _tag()
    behaviour: dict[str, Any] = {
        "three": {"fail_always": True, "retryable": False},
        "two:compensate": {"fail_always": True},
    }
    saga = harness.wait_final(harness.submit("it.three", _input(tag, **behaviour)))
    assert saga.state == "compensation_failed"
    done = _rerun(harness, saga.id, input_patch={"behaviour": {"three": None}})
    # One succeeded and was never undone (strict order): it keeps its result. Two's undo gave up,
    # so its effect may stand: it runs again under its earlier keys, and the worker answers with
    # the result it stored rather than doing it twice. Three failed: new keys, run again.
    assert done.detail["start"] == "two"
    assert [(s["name"], s["runs"], s["earlier_keys"]) for s in done.detail["steps"]] == [
        ("one", False, False),
        ("two", True, True),
        ("three", True, False),
    ]
    assert len(done.detail["closed"]) == 1
    rerun = harness.wait_final(saga.id)
    assert rerun.state == "completed" and rerun.results["one"] == saga.results["one"]
    assert rerun.results["two"] == saga.results["two"]
    assert harness.calls(tag)["one"] == 1 and harness.calls(tag)["two"] == 1 and harness.calls(tag)["three"] == 2
    assert harness.effects(tag).count("two") == 1
    with harness.wiring.sessions() as session:
        items = session.scalars(select(WorkItem).where(WorkItem.saga_id == saga.id)).all()
    assert [(i.type, i.is_open) for i in items] == [("remediation", False)]


def test_a_saga_that_ends_while_paused_is_no_longer_paused_and_reruns(harness: Harness) -> None:
    tag = _tag()
    behaviour: dict[str, Any] = {
        "three": {"fail_always": True, "retryable": False},
        "one:compensate": {"sleep_ms": 1000},
    }
    saga_id = harness.submit("it.three", _input(tag, **behaviour))
    _handler_started(harness, tag, "one:compensate")
    _control(harness, saga_id, SagaControl.pause, "hold")
    # The last undo, under way when paused, ends the saga: the pause ends with it.
    ended = harness.wait_final(saga_id)
    assert ended.state == "compensated" and ended.paused_at is None and ended.paused_ms > 0
    _rerun(harness, saga_id, input_patch={"behaviour": {"three": None}})
    assert harness.wait_final(saga_id).state == "completed"


def test_a_rerun_refuses_what_it_cannot_do_and_changes_nothing(harness: Harness) -> None:
    tag = _tag()
    running = harness.submit("it.three", _input(tag, one={"sleep_ms": 1000}))
    with pytest.raises(Conflict, match="only a saga that ended without completing"):
        _rerun(harness, running)
    assert harness.wait_final(running).state == "completed"
    with pytest.raises(Conflict, match="is completed"):
        _rerun(harness, running)
    failed = harness.wait_final(
        harness.submit("it.three", _input(_tag(), two={"fail_always": True, "retryable": False}))
    )
    with pytest.raises(InvalidInput, match="has no step 'four'"):
        _rerun(harness, failed.id, from_step="four")
    with pytest.raises(InvalidInput, match="input does not match"):
        _rerun(harness, failed.id, input_patch={"tag": 5})
    after = harness.saga(failed.id)
    assert (after.state, after.input, after.audit) == ("compensated", failed.input, [])


# -- the API ---------------------------------------------------------------------------------------

ADMIN = "wy_test_controls_admin_token_0123456789"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


def test_the_api_cancels_and_terminates_with_the_scope_in_the_tenant(client: TestClient) -> None:
    # No workers run here: each saga waits on its first step.
    submitter = user_token(client, "acme", ["sagas:write", "sagas:read"])
    operator = user_token(client, "acme", ["sagas:control", "sagas:read"])
    stranger = user_token(client, "globex", ["sagas:control", "sagas:read"])
    body = {"template": "it.three", "input": {"tag": "a"}}
    first = client.post("/api/v1/sagas", json=body, headers=submitter).json()["id"]
    second = client.post("/api/v1/sagas", json=body, headers=submitter).json()["id"]
    reason = {"reason": "duplicate order"}

    refused = client.post(f"/api/v1/sagas/{first}/cancel", json=reason, headers=submitter)
    assert refused.status_code == 403 and "sagas:control" in refused.json()["error"]["message"]
    assert client.post(f"/api/v1/sagas/{first}/cancel", json=reason, headers=stranger).status_code == 404
    assert client.post("/api/v1/sagas/no-such-saga/cancel", json=reason, headers=operator).status_code == 404
    for bad in ({}, {"reason": ""}, {"reason": "x", "force": True}):
        answer = client.post(f"/api/v1/sagas/{first}/cancel", json=bad, headers=operator)
        assert answer.status_code == 422, bad
    assert client.get(f"/api/v1/sagas/{first}", headers=operator).json()["state"] == "running"

    cancelled = client.post(f"/api/v1/sagas/{first}/cancel", json=reason, headers=operator)
    assert cancelled.status_code == 200
    saga = cancelled.json()
    # One's handler may have run: it is undone, and the saga ends cancelled once that is done.
    assert saga["state"] == "compensating"
    assert [(a["step_name"], a["phase"], a["outcome"]) for a in saga["attempts"]] == [
        ("one", "forward", "cancelled"),
        ("one", "compensate", "running"),
    ]
    assert [(e["actor"], e["action"], e["reason"]) for e in saga["audit"]] == [
        ("user:ann", "cancel", "duplicate order")
    ]
    again = client.post(f"/api/v1/sagas/{first}/cancel", json=reason, headers=operator)
    assert again.status_code == 409 and "compensating already" in again.json()["error"]["message"]

    terminated = client.post(f"/api/v1/sagas/{second}/terminate", json={"reason": "stuck"}, headers=operator)
    assert terminated.status_code == 200 and terminated.json()["state"] == "terminated"
    listed = client.get("/api/v1/sagas", params={"state": "terminated"}, headers=operator).json()
    assert [s["id"] for s in listed["items"]] == [second]
    assert client.post(f"/api/v1/sagas/{second}/terminate", json={"reason": "x"}, headers=operator).status_code == 409


def test_the_api_pauses_and_resumes(client: TestClient) -> None:
    saga_id = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}).json()["id"]
    paused = client.post(f"/api/v1/sagas/{saga_id}/pause", json={"reason": "look first"})
    assert paused.status_code == 200 and paused.json()["paused_at"] is not None
    again = client.post(f"/api/v1/sagas/{saga_id}/pause", json={"reason": "look first"})
    assert again.status_code == 409 and "paused already" in again.json()["error"]["message"]
    resumed = client.post(f"/api/v1/sagas/{saga_id}/resume", json={"reason": "looked"})
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    not_paused = client.post(f"/api/v1/sagas/{saga_id}/resume", json={"reason": "looked"})
    assert not_paused.status_code == 409 and "not paused" in not_paused.json()["error"]["message"]
    assert [e["action"] for e in client.get(f"/api/v1/sagas/{saga_id}").json()["audit"]] == ["pause", "resume"]


def test_a_bulk_control_counts_first_and_acts_on_what_was_counted(client: TestClient) -> None:
    operator = user_token(client, "acme", ["sagas:control", "sagas:read", "sagas:write"])
    stranger = user_token(client, "globex", ["sagas:control", "sagas:read", "sagas:write"])
    body = {"template": "it.three", "input": {"tag": "a"}}
    ours = [client.post("/api/v1/sagas", json=body, headers=operator).json()["id"] for _ in range(3)]
    theirs = client.post("/api/v1/sagas", json=body, headers=stranger).json()["id"]
    bulk = {"action": "pause", "reason": "incident 42", "filter": {"template": "it.three", "state": "running"}}

    counted = client.post("/api/v1/sagas/bulk", json=bulk, headers=operator).json()
    assert (counted["matched"], counted["dry_run"], counted["sample"]) == (3, True, ours)
    assert counted["results"] == [] and counted["done"] == 0
    stale = client.post("/api/v1/sagas/bulk", json={**bulk, "dry_run": False, "expect": 2}, headers=operator)
    assert stale.status_code == 409 and "matches 3 sagas now, not the 2 expected" in stale.json()["error"]["message"]
    unnamed = client.post("/api/v1/sagas/bulk", json={**bulk, "dry_run": False}, headers=operator)
    assert unnamed.status_code == 422 and unnamed.json()["error"]["details"][0]["path"] == "expect"
    assert all(client.get(f"/api/v1/sagas/{i}", headers=operator).json()["paused_at"] is None for i in ours)

    acted = client.post("/api/v1/sagas/bulk", json={**bulk, "dry_run": False, "expect": 3}, headers=operator).json()
    assert (acted["matched"], acted["done"], acted["refused"]) == (3, 3, 0)
    assert [r["id"] for r in acted["results"]] == ours
    assert all(client.get(f"/api/v1/sagas/{i}", headers=operator).json()["paused_at"] for i in ours)
    assert client.get(f"/api/v1/sagas/{theirs}", headers=stranger).json()["paused_at"] is None  # another tenant's

    # A saga the control does not apply to is answered on its own; the others are still done.
    client.post(f"/api/v1/sagas/{ours[0]}/resume", json={"reason": "this one is fine"}, headers=operator)
    resume = {**bulk, "action": "resume", "dry_run": False, "expect": 3}
    answered = client.post("/api/v1/sagas/bulk", json=resume, headers=operator).json()
    assert (answered["done"], answered["refused"]) == (2, 1)
    assert answered["results"][0] == {
        "id": ours[0],
        "status": 409,
        "error": f"saga {ours[0]} is not paused: there is nothing to resume",
    }

    for bad, path in (
        ({**bulk, "filter": {}}, "filter"),
        ({**bulk, "action": "explode"}, "action"),
        ({**bulk, "limit": 5000}, "limit"),
    ):
        refused = client.post("/api/v1/sagas/bulk", json=bad, headers=operator)
        assert refused.status_code == 422 and refused.json()["error"]["details"][0]["path"].removeprefix(
            "body."
        ).startswith(path), bad
    other_tenant = client.post("/api/v1/sagas/bulk", json={**bulk, "filter": {"tenant": "globex"}}, headers=operator)
    assert other_tenant.status_code == 403


def test_the_api_reruns_with_a_plan_first(client: TestClient) -> None:
    saga_id = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}).json()["id"]
    early = client.post(f"/api/v1/sagas/{saga_id}/rerun", json={"reason": "x"})
    assert early.status_code == 409 and "only a saga that ended without completing" in early.json()["error"]["message"]
    client.post(f"/api/v1/sagas/{saga_id}/terminate", json={"reason": "stuck"})
    body = {"reason": "retry it", "input_patch": {"tag": "b"}, "dry_run": True}
    planned = client.post(f"/api/v1/sagas/{saga_id}/rerun", json=body)
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert plan["dry_run"] and plan["start"] == "one" and plan["input"] == {"tag": "b"}
    assert [s["runs"] for s in plan["steps"]] == [True, True, True] and plan["saga"]["state"] == "terminated"
    done = client.post(f"/api/v1/sagas/{saga_id}/rerun", json={**body, "dry_run": False}).json()
    assert done["saga"]["state"] == "running" and done["saga"]["input"] == {"tag": "b"}
    assert [e["action"] for e in done["saga"]["audit"]] == ["terminate", "rerun"]
    bad = client.post(f"/api/v1/sagas/{saga_id}/rerun", json={"reason": "x", "from_step": "nope"})
    assert bad.status_code == 409  # running again: nothing to rerun


KEYED: dict[str, Any] = {
    "name": "it.keyed",
    "version": "1.0.0",
    "input_schema": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}},
    "steps": [{"name": "charge", "capability": "alpha", "handler": "one", "idempotence_key": "order:{input.order_id}"}],
}


def test_a_rerun_patch_that_breaks_a_key_template_is_a_422_naming_input_patch(client: TestClient) -> None:
    assert client.post("/api/v1/templates", json=KEYED).status_code == 201
    saga_id = client.post("/api/v1/sagas", json={"template": "it.keyed", "input": {"order_id": "A-1"}}).json()["id"]
    client.post(f"/api/v1/sagas/{saga_id}/terminate", json={"reason": "stuck"})
    for patch in ({"order_id": None}, {"order_id": {"a": 1}}):
        for dry_run in (True, False):
            body = {"reason": "x", "input_patch": patch, "dry_run": dry_run}
            answer = client.post(f"/api/v1/sagas/{saga_id}/rerun", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["details"][0]["path"] == "input_patch"
    plan = client.post(f"/api/v1/sagas/{saga_id}/rerun", json={"reason": "x", "dry_run": True}).json()
    # Same input: the template's key renders as before, and the plan says so.
    assert "idempotence key 'order:A-1' is the same as before" in plan["steps"][0]["why"]
    assert client.get(f"/api/v1/sagas/{saga_id}").json()["state"] == "terminated"


def test_a_control_by_a_principal_with_a_long_id_is_recorded(client: TestClient) -> None:
    from orchestrator.work.tokens import create_token

    long_id = "ops-" + "x" * 251  # a token's principal id may be 255 characters long
    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        token = create_token(
            session, principal_type=PrincipalType.user, principal_id=long_id, tenant="*", scopes=["sagas:control"]
        )
    saga_id = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}).json()["id"]
    paused = client.post(
        f"/api/v1/sagas/{saga_id}/pause", json={"reason": "x"}, headers={"Authorization": f"Bearer {token.secret}"}
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["audit"][0]["actor"] == f"user:{long_id}"
