"""Saga SLAs: warning, breach and escalation timers from the saga's start, and the six breach
actions (notify, escalate, pause, cancel, open-remediation, queue-human-approval)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from models.tables import Timer
from tests.unit.sagas.harness import T0, Scenario, handler, template, work_item

WHY = "the saga's SLA was breached"


def with_sla(sla: dict[str, Any], *, waits_on_item: bool = False) -> Scenario:
    second = work_item("approve") if waits_on_item else handler("b")
    s = Scenario(template(handler("a"), second, handler("c"), sla=sla), {"tag": "t"}).start()
    s.succeed(0)
    return s


def breach(action: str, *, waits_on_item: bool = False, to: str | None = None) -> Scenario:
    s = with_sla(
        {"target_ms": 10_000, "breach_action": action} | ({"breach_to": to} if to else {}), waits_on_item=waits_on_item
    )
    s.fire("saga_sla_breach:s-1:breach")
    return s


def whats(s: Scenario) -> list[str]:
    return [e["what"] for e in s.saga.sla_events]


def test_warning_breach_and_escalation_timers_are_armed_at_start() -> None:
    sla = {
        "target_ms": 10_000,
        "warn_at_pct": 80,
        "escalation": [
            {"after_ms": 12_000, "action": "notify"},
            {"after_ms": 20_000, "action": "escalate", "to": "leads"},
        ],
    }
    s = Scenario(template(handler("a"), sla=sla)).start()
    due = {key: (t.kind, t.due_at - T0, t.payload) for key, t in s.timers.items()}
    assert due == {
        "saga_sla_warn:s-1:warn": (TimerKind.saga_sla_warn, timedelta(seconds=8), {}),
        "saga_sla_breach:s-1:breach": (TimerKind.saga_sla_breach, timedelta(seconds=10), {}),
        "saga_sla_escalate:s-1:0": (TimerKind.saga_sla_escalate, timedelta(seconds=12), {"step": 0}),
        "saga_sla_escalate:s-1:1": (TimerKind.saga_sla_escalate, timedelta(seconds=20), {"step": 1}),
    }
    assert {t.saga_id for t in s.timers.values()} == {"s-1"}


def test_without_warn_at_pct_there_is_no_warning_timer() -> None:
    s = Scenario(template(handler("a"), sla={"target_ms": 1000})).start()
    assert s.timer_kinds() == ["saga_sla_breach"]


def test_the_sla_clock_runs_from_the_saga_creation() -> None:
    spec = template(handler("a"), sla={"target_ms": 1000})
    s = Scenario(spec)
    s.saga.created_at = T0 - timedelta(milliseconds=400)  # submitted, then started a little later
    s.start()
    assert s.timers["saga_sla_breach:s-1:breach"].due_at == T0 + timedelta(milliseconds=600)


def test_the_warning_is_recorded_and_emitted() -> None:
    s = with_sla({"target_ms": 10_000, "warn_at_pct": 50})
    s.fire("saga_sla_warn:s-1:warn")
    assert s.saga.sla_warned_at == T0 + timedelta(seconds=5)
    assert s.saga.sla_events == [{"at": s.now.isoformat(), "what": "sla_warning", "pct": 50}]
    assert s.event_names() == ["saga.sla_warning"]
    assert s.store.events[0][1] == {
        "saga": {"id": "s-1", "template": "unit.saga", "version": "1.0.0", "state": "running", "sla_breach_count": 0},
        "action": None,
    }
    assert s.state() is SagaState.running


def test_notify_on_breach_only_emits_the_event() -> None:
    s = breach("notify")
    assert s.saga.sla_breached_at == T0 + timedelta(seconds=10) and s.saga.sla_breach_count == 1
    assert whats(s) == ["sla_breached"]
    assert s.saga.sla_events[0] | {"at": "-"} == {
        "at": "-",
        "what": "sla_breached",
        "action": "notify",
        "target_ms": 10_000,
    }
    assert s.event_names() == ["saga.sla_breached"]
    assert s.store.events[0][1]["action"] == "notify" and s.store.events[0][1]["saga"]["sla_breach_count"] == 1
    assert (s.store.item_actions, s.store.follow_ups) == ([], [])
    assert s.state() is SagaState.running and s.step_states()[1] is StepState.running


@pytest.mark.parametrize(("action", "to"), [("escalate", "leads"), ("pause", None)])
def test_escalate_and_pause_act_on_the_items_the_saga_waits_on(action: str, to: str | None) -> None:
    s = breach(action, waits_on_item=True, to=to)
    (item,) = s.open_items(1)
    assert s.store.item_actions == [(item.id, action, to, WHY)]
    note = s.saga.sla_events[-1]
    assert (note["what"], note["items"], note["to"]) == (action, [item.id], to)
    assert "nothing" not in note
    assert s.state() is SagaState.running


@pytest.mark.parametrize(("action", "to"), [("escalate", "leads"), ("pause", None)])
def test_escalate_and_pause_with_a_handler_running_record_that_there_is_nothing_to_do(
    action: str, to: str | None
) -> None:
    s = breach(action, to=to)
    assert s.store.item_actions == []
    note = s.saga.sla_events[-1]
    assert note["what"] == action and note["items"] == []
    assert (
        note["nothing"]
        == f"the saga waits on no work item now: nothing to {action} (a running handler is left as it is)"
    )


def test_cancel_on_breach_stops_the_current_step_and_compensates() -> None:
    s = breach("cancel")
    assert whats(s) == ["sla_breached", "cancelled"]
    assert s.state() is SagaState.compensating
    assert s.saga.error == f"SlaBreached: {WHY} during step 'b'"
    attempt = s.attempt(1, Phase.forward, 1)
    assert attempt is not None and attempt.outcome is Outcome.timed_out
    assert s.moves()[-1] == ("b", "compensate", 1)


def test_cancel_on_breach_cancels_the_item_the_saga_waits_on() -> None:
    s = breach("cancel", waits_on_item=True)
    assert s.open_items(1) == [] and len(s.store.cancelled) == 1
    assert s.store.cancelled[0][1] == f"SlaBreached: {WHY}"
    assert s.moves()[-1] == ("a", "compensate", 1)


def test_cancel_is_refused_while_the_saga_compensates() -> None:
    s = with_sla({"target_ms": 10_000, "breach_action": "cancel"})
    s.report(1, Outcome.failed, retryable=False)
    s.fire("saga_sla_breach:s-1:breach")
    assert whats(s) == ["sla_breached", "cancel_refused"]
    assert s.saga.sla_events[-1]["reason"] == "the saga is compensating; undoing must finish"
    assert s.moves()[-1] == ("a", "compensate", 1) and s.saga.steps[0].state is StepState.compensating


def test_open_remediation_on_breach_opens_an_item_for_a_person() -> None:
    s = breach("open-remediation")
    (opened,) = s.store.follow_ups
    assert (opened["saga"], opened["tenant"], opened["kind"], opened["scope"]) == (
        "s-1",
        "ops",
        "remediation",
        "work:claim",
    )
    assert opened["title"] == "Remediate late saga s-1 (unit.saga)"
    assert opened["payload"] == {
        "incidentRef": "saga:s-1",
        "startAt": s.now.isoformat(),
        "remediationPlan": f"{WHY}; find out why",
    }
    assert opened["key"] == f"saga:s-1:sla:open-remediation:1:{s.now.isoformat()}"
    assert s.saga.sla_events[-1]["what"] == "remediation_opened" and s.saga.sla_events[-1]["item"] == "follow-up-1"
    assert s.state() is SagaState.running


def test_queue_human_approval_on_breach_asks_a_supervisor() -> None:
    s = breach("queue-human-approval")
    (opened,) = s.store.follow_ups
    assert (opened["kind"], opened["scope"], opened["payload"]) == ("task", "work:supervise", {"late_saga": "s-1"})
    assert opened["title"] == "Approve continuing late saga s-1 (unit.saga)"
    assert whats(s) == ["sla_breached", "approval_queued"]
    assert s.state() is SagaState.running


def test_the_escalation_ladder_climbs_in_order() -> None:
    ladder = [
        {"after_ms": 11_000, "action": "notify"},
        {"after_ms": 12_000, "action": "escalate", "to": "leads"},
        {"after_ms": 13_000, "action": "open-remediation"},
    ]
    s = with_sla({"target_ms": 10_000, "escalation": ladder}, waits_on_item=True)
    (item,) = s.open_items(1)
    for key in [
        "saga_sla_breach:s-1:breach",
        "saga_sla_escalate:s-1:0",
        "saga_sla_escalate:s-1:1",
        "saga_sla_escalate:s-1:2",
    ]:
        s.fire(key)
    assert s.event_names() == ["saga.sla_breached", "saga.escalated", "saga.escalated", "saga.escalated"]
    assert [(e[1]["step"], e[1]["action"], e[1]["to"]) for e in s.store.events[1:]] == [
        (1, "notify", None),
        (2, "escalate", "leads"),
        (3, "open-remediation", None),
    ]
    steps = [e for e in s.saga.sla_events if e["what"] == "escalation_step"]
    assert [(e["step"], e["of"], e["action"]) for e in steps] == [
        (1, 3, "notify"),
        (2, 3, "escalate"),
        (3, 3, "open-remediation"),
    ]
    assert s.store.item_actions == [(item.id, "escalate", "leads", "escalation step 2 of the saga's SLA")]
    assert len(s.store.follow_ups) == 1
    assert s.saga.sla_breach_count == 1  # escalation steps are not breaches


def test_an_escalation_step_can_cancel_the_saga() -> None:
    s = with_sla({"target_ms": 10_000, "escalation": [{"after_ms": 15_000, "action": "cancel"}]})
    s.fire("saga_sla_escalate:s-1:0")
    assert s.state() is SagaState.compensating
    assert s.saga.error == "SlaBreached: escalation step 1 of the saga's SLA during step 'b'"


def test_a_finished_saga_stops_its_sla_clock() -> None:
    s = with_sla({"target_ms": 10_000, "warn_at_pct": 50, "escalation": [{"after_ms": 15_000, "action": "notify"}]})
    armed = dict(s.timers)
    s.succeed(1, 2)
    assert s.timers == {}
    for timer in armed.values():  # fired anyway, as by a loop that loaded them before
        s.fire_timer(timer)
    assert s.saga.sla_events == [] and s.event_names() == ["saga.completed"]
    assert s.saga.sla_breach_count == 0


def test_a_second_breach_counts_again_but_keeps_the_first_time() -> None:
    s = breach("notify")
    first = s.saga.sla_breached_at
    s.advance(1000)
    s.fire_timer(Timer(key="again", kind=TimerKind.saga_sla_breach, saga_id="s-1", payload={}, due_at=s.now))
    assert s.saga.sla_breach_count == 2 and s.saga.sla_breached_at == first
    assert s.event_names() == ["saga.sla_breached", "saga.sla_breached"]
