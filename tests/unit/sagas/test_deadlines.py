"""Deadlines: an attempt's (no report in time: timed out), a work-item step's (its items are
cancelled), and the whole saga's (stop the current step and compensate, unless compensating)."""

from __future__ import annotations

from datetime import timedelta

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from tests.unit.sagas.harness import T0, Scenario, handler, retry, template, work_item


def test_an_attempt_past_its_deadline_times_out_and_is_retried() -> None:
    s = Scenario(template(handler("a", timeout_ms=1000, retry=retry(2, 100)))).start()
    s.time_out(0)
    assert s.now == T0 + timedelta(seconds=31)  # its timeout plus the grace
    attempt = s.attempt(0, Phase.forward, 1)
    assert attempt is not None and attempt.outcome is Outcome.timed_out and attempt.finished_at == s.now
    assert s.step_states() == [StepState.retry_wait]
    (timer,) = s.timers.values()
    assert timer.due_at == s.now + timedelta(milliseconds=100)


def test_a_report_after_the_attempt_timed_out_is_dropped() -> None:
    s = Scenario(template(handler("a", retry=retry(2)), handler("b"))).start()
    s.time_out(0)
    assert s.report(0, attempt=1) is False
    assert "a" not in s.saga.results and s.step_states()[0] is StepState.retry_wait


def test_an_attempt_past_its_deadline_on_the_last_try_compensates() -> None:
    s = Scenario(template(handler("a"), handler("b", retry=retry(1)))).start()
    s.succeed(0)
    s.time_out(1)
    assert s.moves()[-1] == ("b", "compensate", 1)  # it may have done its work
    assert (
        s.saga.error
        == "step 'b' gave up after 1 attempt(s): TimedOut: no report from a worker before the step's deadline"
    )


def test_a_compensation_past_its_deadline_is_retried() -> None:
    s = Scenario(template(handler("a", compensate_retry=retry(2)), handler("b", undo=False))).start()
    s.succeed(0)
    s.report(1, Outcome.failed, retryable=False)
    s.time_out(0, Phase.compensate)
    assert s.saga.steps[0].compensation_attempts == 1 and s.saga.steps[0].state is StepState.compensating
    s.fire_retry(0, Phase.compensate)
    s.time_out(0, Phase.compensate)
    assert s.state() is SagaState.compensation_failed


def sign(**extra: object) -> Scenario:
    step = work_item("sign", timeout_ms=1500, retry=retry(2, 0, 0)) | dict(extra)
    return Scenario(template(handler("first"), step), {"tag": "t"}).start()


def test_a_work_item_step_has_its_timeout_as_deadline() -> None:
    s = sign()
    s.succeed(0)
    assert s.latest(1).deadline_at == s.now + timedelta(milliseconds=1500)


def test_a_work_item_step_without_timeout_waits_forever() -> None:
    s = Scenario(template(work_item("sign")), {"tag": "t"}).start()
    assert s.latest(0).deadline_at is None


def test_a_work_item_step_past_its_deadline_cancels_its_item_and_opens_another() -> None:
    s = sign()
    s.succeed(0)
    (first,) = s.open_items(1)
    s.time_out(1)
    assert first.status == "cancelled" and not first.is_open
    assert s.store.cancelled == [(first.id, "the step's deadline passed")]
    attempt = s.attempt(1, Phase.forward, 1)
    assert attempt is not None and attempt.outcome is Outcome.timed_out
    assert attempt.error == "TimedOut: the work item was not finished before the step's deadline"
    s.fire_retry(1)
    (second,) = s.open_items(1)
    assert second.id != first.id and second.saga_attempt == 2


def test_a_late_item_report_after_the_step_deadline_is_dropped() -> None:
    s = sign()
    s.succeed(0)
    (item,) = s.open_items(1)
    s.time_out(1)
    assert s.finish_item(item.id, "done") is False
    assert s.step_states()[1] is StepState.retry_wait


def saga_with_deadline(*steps: dict[str, object]) -> Scenario:
    return Scenario(template(*steps, deadline_ms=5000), {"tag": "t"}).start()


def test_the_saga_deadline_is_armed_at_start() -> None:
    s = saga_with_deadline(handler("a"))
    timer = s.timers["saga_deadline:s-1"]
    assert timer.kind == TimerKind.saga_deadline and timer.saga_id == "s-1"
    assert timer.due_at == T0 + timedelta(seconds=5)


def test_no_saga_deadline_without_deadline_ms() -> None:
    assert Scenario(template(handler("a"))).start().timers == {}


def test_the_saga_deadline_stops_a_running_handler_and_undoes_it_too() -> None:
    s = saga_with_deadline(handler("a"), handler("b"), handler("c"))
    s.succeed(0)
    s.fire("saga_deadline:s-1")
    attempt = s.attempt(1, Phase.forward, 1)
    assert attempt is not None and attempt.outcome is Outcome.timed_out
    error = "DeadlineExceeded: the saga's deadline of 5000 ms passed during step 'b'"
    assert attempt.error == error and s.saga.error == error
    assert s.state() is SagaState.compensating
    assert s.moves()[-1] == ("b", "compensate", 1)  # the handler may have done its work
    s.succeed(1, phase=Phase.compensate)
    s.succeed(0, phase=Phase.compensate)
    assert s.state() is SagaState.compensated


def test_the_saga_deadline_cancels_the_item_it_waits_on_and_undoes_what_came_before() -> None:
    s = saga_with_deadline(handler("a"), work_item("sign"))
    s.succeed(0)
    (item,) = s.open_items(1)
    s.fire("saga_deadline:s-1")
    assert not item.is_open and s.store.cancelled[0][0] == item.id
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("a", "compensate", 1)


def test_the_saga_deadline_drops_a_waiting_retry() -> None:
    s = saga_with_deadline(handler("first"), handler("a", undo=False, retry=retry(3, 10_000)))
    s.succeed(0)
    s.report(1, Outcome.failed)
    assert "dispatch:s-1:1:forward:2" in s.timers
    s.fire("saga_deadline:s-1")
    assert s.timers == {}
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.state() is SagaState.compensating


def test_the_saga_deadline_no_longer_applies_once_compensating() -> None:
    s = saga_with_deadline(handler("a"), handler("b"))
    s.succeed(0)
    s.report(1, Outcome.failed, retryable=False)
    sent = len(s.sent)
    s.fire("saga_deadline:s-1")
    assert s.state() is SagaState.compensating and len(s.sent) == sent
    assert s.saga.steps[0].state is StepState.compensating
    s.succeed(0, phase=Phase.compensate)
    assert s.state() is SagaState.compensated


def test_a_saga_that_finished_in_time_has_no_deadline_left() -> None:
    s = saga_with_deadline(handler("a"))
    s.succeed(0)
    assert s.timers == {}


def test_the_saga_deadline_undoes_the_items_of_a_fan_out_that_were_already_done() -> None:
    withdraw = {"type": "task", "title": "Withdraw {each}", "tenant": "acme", "offer": {"type": "human"}}
    review = work_item("review", title="Review {each}", for_each="{input.docs}", compensate_work_item=withdraw)
    s = Scenario(template(handler("first"), review, deadline_ms=5000), {"docs": ["d0", "d1", "d2"], "tag": "t"})
    s.start().succeed(0)
    s.finish_item("item:s-1:1:forward:1:1", "done", result="r1")
    s.fire("saga_deadline:s-1")
    # The two open items are cancelled; the one that was done is undone before step one.
    assert s.state() is SagaState.compensating
    assert s.step_states()[1] is StepState.compensating
    (undo,) = s.open_items(1)
    assert undo.id == "item:s-1:1:compensate:1:1" and undo.title == "Withdraw d1"
    s.finish_item(undo.id, "done")
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_the_saga_deadline_does_not_undo_a_fan_out_of_items_none_of_which_was_done() -> None:
    withdraw = {"type": "task", "title": "Withdraw {each}", "tenant": "acme", "offer": {"type": "human"}}
    review = work_item("review", title="Review {each}", for_each="{input.docs}", compensate_work_item=withdraw)
    s = Scenario(template(handler("first"), review, deadline_ms=5000), {"docs": ["d0", "d1"], "tag": "t"})
    s.start().succeed(0)
    s.fire("saga_deadline:s-1")
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_work_item_step_past_its_last_deadline_is_not_undone_its_item_was_never_done() -> None:
    withdraw = {"type": "task", "title": "Withdraw {input.tag}", "tenant": "acme", "offer": {"type": "human"}}
    sign = work_item("sign", timeout_ms=1000, retry=retry(1), compensate_work_item=withdraw)
    s = Scenario(template(handler("first"), sign), {"tag": "t"}).start()
    s.succeed(0)
    s.time_out(1)
    # The item was cancelled, nobody did it: nothing of step two to undo, only step one.
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("first", "compensate", 1)
    assert s.open_items(1) == []


def test_a_work_item_fan_out_past_its_last_deadline_undoes_the_items_that_were_done() -> None:
    withdraw = {"type": "task", "title": "Withdraw {each}", "tenant": "acme", "offer": {"type": "human"}}
    review = work_item(
        "review", for_each="{input.docs}", timeout_ms=1000, retry=retry(1), compensate_work_item=withdraw
    )
    s = Scenario(template(handler("first"), review), {"docs": ["d0", "d1"], "tag": "t"}).start()
    s.succeed(0)
    s.finish_item("item:s-1:1:forward:1:0", "done")
    s.time_out(1)
    (undo,) = s.open_items(1)
    assert undo.title == "Withdraw d0"
