"""Work-item steps: the saga opens an item for a person or an agent and waits; the item's end
comes back as a report and settles the step. An item the saga's data cannot make fails the step
at once."""

from __future__ import annotations

from models.enums import Outcome, Phase, SagaState, StepState
from tests.unit.sagas.harness import Scenario, handler, template, work_item

CALL = {
    "type": "task",
    "title": "Call {input.customer}",
    "tenant": "acme",
    "offer": {"type": "human", "group": "support"},
}


def approval(title: str = "Approve {input.tag} at {results.quote.amount}", **extra: object) -> Scenario:
    step = work_item("approve", title=title) | dict(extra)
    s = Scenario(template(handler("quote"), step, handler("ship")), {"tag": "T-1", "customer": "Ada"}).start()
    s.report(0, result={"amount": 12})
    return s


def test_a_work_item_step_opens_an_item_and_sends_nothing() -> None:
    s = approval()
    (item,) = s.open_items(1)
    assert item.id == "item:s-1:1:forward:1"
    assert item.title == "Approve T-1 at 12" and item.tenant == "acme" and item.status == "todo"
    assert (item.saga_id, item.saga_step, item.saga_phase, item.saga_attempt) == ("s-1", "approve", "forward", 1)
    assert s.last_sent == []
    assert s.step_states()[1] is StepState.running
    attempt = s.latest(1)
    assert attempt.worker == f"work item {item.id}" and attempt.outcome is Outcome.running
    assert attempt.deadline_at is None


def test_an_item_done_settles_the_step_with_its_result_and_moves_on() -> None:
    s = approval()
    (item,) = s.open_items(1)
    assert s.finish_item(item.id, "done", result={"approved_by": "bo"})
    assert s.saga.results["approve"] == {"approved_by": "bo"}
    assert s.step_states() == [StepState.succeeded, StepState.succeeded, StepState.running]
    assert s.moves()[-1] == ("ship", "forward", 1)
    assert s.dispatches()[-1].results["approve"] == {"approved_by": "bo"}


def test_an_item_payload_can_carry_a_whole_earlier_result() -> None:
    s = approval(work_item=CALL | {"title": "Approve", "payload": {"quote": "{results.quote}"}})
    (item,) = s.open_items(1)
    assert item.payload == {"quote": {"amount": 12}}


def test_an_item_rejected_fails_the_step_without_retry() -> None:
    s = approval()
    (item,) = s.open_items(1)
    s.finish_item(item.id, "failed")
    assert s.step_states() == [StepState.compensating, StepState.failed, StepState.pending]
    assert s.saga.steps[1].attempts == 1
    assert s.saga.error == f"step 'approve' failed with a non-retryable error: Boom: work item {item.id} ended failed"
    assert s.moves()[-1] == ("quote", "compensate", 1)


def test_an_item_cancelled_fails_the_step_too() -> None:
    s = approval()
    (item,) = s.open_items(1)
    s.finish_item(item.id, "cancelled")
    assert s.step_states()[1] is StepState.failed


def test_a_duplicate_item_report_changes_nothing() -> None:
    s = approval()
    (item,) = s.open_items(1)
    s.finish_item(item.id, "done", result=1)
    assert s.finish_item(item.id, "done", result=2) is False
    assert s.saga.results["approve"] == 1 and s.moves().count(("ship", "forward", 1)) == 1


def test_an_item_that_cannot_be_rendered_fails_the_step_at_once() -> None:
    s = approval(title="Approve {input.missing}")
    assert s.store.items == {}
    attempt = s.latest(1)
    assert attempt.outcome is Outcome.failed and attempt.finished_at == s.now
    assert attempt.error is not None and attempt.error.startswith("WorkItemNotCreated: ")
    assert "{input.missing}" in attempt.error
    assert s.step_states() == [StepState.compensating, StepState.failed, StepState.pending]
    assert s.saga.steps[1].attempts == 1  # retrying would not change the saga's data


def test_an_item_of_an_unknown_type_fails_the_step_at_once() -> None:
    s = approval(work_item=CALL | {"type": "nonesuch"})
    assert s.latest(1).error == "WorkItemNotCreated: unknown work-item type 'nonesuch'"
    assert s.step_states()[1] is StepState.failed


def test_a_first_step_that_cannot_open_its_item_compensates_nothing() -> None:
    s = Scenario(template(work_item("sign", title="Sign {input.nope}")), {}).start()
    assert s.state() is SagaState.compensated and s.event_names() == ["saga.compensated"]


def test_a_step_undone_by_a_work_item_opens_it_when_compensating() -> None:
    step = handler("charge", undo=False, compensate_work_item=CALL)
    s = Scenario(template(handler("first"), step, handler("ship")), {"customer": "Ada"}).start()
    s.succeed(0, 1)
    s.report(2, Outcome.failed, retryable=False)
    (call,) = s.open_items(1)
    assert call.id == "item:s-1:1:compensate:1" and call.title == "Call Ada" and call.saga_phase == "compensate"
    assert s.saga.steps[1].state is StepState.compensating
    assert s.moves()[-1] == ("ship", "forward", 1)  # nothing dispatched for the call
    s.finish_item(call.id, "done")
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_work_item_undone_by_a_handler() -> None:
    step = work_item("approve", capability="approvals", compensate="revoke")
    s = Scenario(template(step, handler("ship")), {"tag": "t"}).start()
    (item,) = s.open_items(0)
    s.finish_item(item.id, "done")
    s.report(1, Outcome.failed, retryable=False)
    (undo,) = s.dispatches(s.last_sent)
    assert (undo.handler, undo.phase, undo.capability, undo.step) == (
        "revoke",
        Phase.compensate,
        "approvals",
        "approve",
    )


def test_an_undo_item_refused_fails_the_compensation() -> None:
    step = handler("charge", undo=False, compensate_work_item=CALL)
    s = Scenario(template(step, handler("ship")), {"customer": "Ada"}).start()
    s.succeed(0)
    s.report(1, Outcome.failed, retryable=False)
    (call,) = s.open_items(0)
    s.finish_item(call.id, "failed")
    assert s.state() is SagaState.compensation_failed
    assert s.store.remediations[0]["step"] == "charge"
