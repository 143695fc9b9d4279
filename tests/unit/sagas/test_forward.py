"""A saga going forward: each success dispatches the next step, the last completes the saga."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from config import keys
from models.enums import Outcome, Phase, SagaState, StepState
from tests.unit.sagas.harness import SETTINGS, T0, Scenario, handler, retry, template


def three() -> Scenario:
    return Scenario(template(handler("a"), handler("b"), handler("c")), {"tag": "x"}).start()


def test_start_dispatches_the_first_step_only() -> None:
    s = three()
    assert s.moves() == [("a", "forward", 1)]
    assert s.step_states() == [StepState.running, StepState.pending, StepState.pending]
    assert s.state() is SagaState.running
    assert s.saga.steps[0].started_at == T0


def test_a_step_that_succeeds_dispatches_the_next() -> None:
    s = three()
    s.advance(50)
    s.succeed(0)
    assert s.moves() == [("a", "forward", 1), ("b", "forward", 1)]
    assert s.step_states() == [StepState.succeeded, StepState.running, StepState.pending]
    assert s.saga.steps[0].finished_at == T0 + timedelta(milliseconds=50)
    assert s.saga.steps[1].started_at == T0 + timedelta(milliseconds=50)


def test_the_last_step_completes_the_saga_and_emits_its_event() -> None:
    s = three()
    s.succeed(0, 1)
    s.advance(10)
    s.succeed(2)
    assert s.state() is SagaState.completed
    assert s.step_states() == [StepState.succeeded] * 3
    assert s.saga.finished_at == T0 + timedelta(milliseconds=10)
    assert s.last_sent == []
    assert s.store.events == [
        (
            "saga.completed",
            {"saga": {"id": "s-1", "template": "unit.saga", "version": "1.0.0", "state": "completed", "error": None}},
        )
    ]


def test_results_are_kept_by_step_name_and_handed_to_later_steps() -> None:
    s = three()
    s.report(0, result={"reserved": 3})
    s.report(1, result=[1, 2])
    assert s.saga.results == {"a": {"reserved": 3}, "b": [1, 2]}
    third = s.dispatches(s.last_sent)[0]
    assert third.results == {"a": {"reserved": 3}, "b": [1, 2]}
    assert third.input == {"tag": "x"}


def test_a_step_result_of_none_is_still_recorded() -> None:
    s = three()
    s.report(0, result=None)
    assert s.saga.results == {"a": None}


def test_the_dispatch_names_its_saga_step_handler_and_queue() -> None:
    s = three()
    (row,) = s.sent
    d = s.dispatches()[0]
    assert (d.saga_id, d.template, d.version, d.step_index, d.step, d.handler) == (
        "s-1",
        "unit.saga",
        "1.0.0",
        0,
        "a",
        "a",
    )
    assert d.capability == "cap" and d.phase is Phase.forward and d.attempt == 1
    assert row["task_id"] == "s-1-0-f1"
    assert row["shadow"] == "a"
    assert d.dispatched_at == T0
    assert s.dispatches() == [d]
    assert keys.capability_queue("cap") == "cap.cap"


def test_the_default_idempotence_key_is_saga_and_step() -> None:
    assert three().dispatches()[0].idempotence_key == "s-1:a"


def test_an_idempotence_key_template_is_rendered_from_the_input() -> None:
    s = Scenario(template(handler("pay", idempotence_key="order:{input.order}:{step}")), {"order": 42}).start()
    assert s.dispatches()[0].idempotence_key == "order:42:pay"


def test_the_idempotence_key_is_stable_across_retries_but_task_ids_are_not() -> None:
    s = Scenario(template(handler("a", retry=retry(3)))).start()
    s.report(0, Outcome.failed)
    s.fire_retry(0)
    first, second = s.dispatches()
    assert first.idempotence_key == second.idempotence_key == "s-1:a"
    assert [row["task_id"] for row in s.sent] == ["s-1-0-f1", "s-1-0-f2"]


@pytest.mark.parametrize(
    ("timeout_ms", "deadline_s"),
    [(None, SETTINGS.step_watchdog_s + SETTINGS.watchdog_grace_s), (2000, 2 + SETTINGS.watchdog_grace_s)],
)
def test_the_attempt_deadline_is_its_timeout_plus_grace(timeout_ms: int | None, deadline_s: int) -> None:
    s = Scenario(template(handler("a", timeout_ms=timeout_ms))).start()
    d = s.dispatches()[0]
    assert d.timeout_ms == timeout_ms
    assert d.expires_at == T0 + timedelta(seconds=deadline_s)
    assert s.latest(0).deadline_at == d.expires_at
    assert s.sent[0]["timeout_ms"] == timeout_ms


def test_a_running_attempt_row_is_written_per_dispatch() -> None:
    s = three()
    (attempt,) = s.store.attempts
    assert (attempt.saga_id, attempt.step_index, attempt.step_name, attempt.phase, attempt.attempt) == (
        "s-1",
        0,
        "a",
        Phase.forward,
        1,
    )
    assert attempt.outcome is Outcome.running and attempt.dispatched_at == T0 and attempt.fencing_token is None


def test_a_report_settles_its_attempt_row() -> None:
    s = three()
    s.advance(5)
    s.report(0, result=1)
    attempt = s.attempt(0, Phase.forward, 1)
    assert attempt is not None
    assert attempt.outcome is Outcome.succeeded and attempt.worker == "w-1" and attempt.error is None
    assert attempt.finished_at == T0 + timedelta(milliseconds=5)


def test_without_a_mutex_scope_no_fencing_token_is_taken() -> None:
    s = three()
    assert s.dispatches()[0].mutex_scope is None and s.dispatches()[0].fencing_token is None
    assert s.store.last_token == 0


def test_a_mutex_scope_is_rendered_and_gets_a_fencing_token() -> None:
    s = Scenario(template(handler("pay", mutex_scope="acct:{input.account}")), {"account": 7}).start()
    d = s.dispatches()[0]
    assert d.mutex_scope == "acct:7"
    assert d.fencing_token == 1 == s.latest(0).fencing_token


def test_fencing_tokens_grow_across_retries_and_steps() -> None:
    locked: dict[str, Any] = {"mutex_scope": "acct:{input.account}", "retry": retry(3)}
    s = Scenario(template(handler("a", **locked), handler("b", **locked)), {"account": 7}).start()
    s.report(0, Outcome.deferred)
    s.fire_retry(0)
    s.report(0, Outcome.failed)
    s.fire_retry(0)
    s.succeed(0)
    tokens = [d.fencing_token for d in s.dispatches()]
    assert [d.step for d in s.dispatches()] == ["a", "a", "a", "b"]
    assert tokens == [1, 2, 3, 4]
    assert [a.fencing_token for a in s.store.attempts] == tokens


def test_a_duplicate_success_report_changes_nothing() -> None:
    s = three()
    s.succeed(0)
    before = (list(s.moves()), s.step_states(), dict(s.saga.results))
    assert s.report(0, attempt=1, result={"other": True}) is False
    assert (s.moves(), s.step_states(), s.saga.results) == before
    assert s.dropped == 1


def test_a_report_for_an_attempt_never_dispatched_is_dropped() -> None:
    s = three()
    assert s.report(0, attempt=2) is False
    assert s.step_states()[0] is StepState.running


def test_every_move_stamps_the_saga_as_updated() -> None:
    s = three()
    s.advance(70)
    s.succeed(0)
    assert s.saga.updated_at == T0 + timedelta(milliseconds=70)


def test_a_one_step_saga_completes_on_its_first_success() -> None:
    s = Scenario(template(handler("only"))).start()
    s.succeed(0)
    assert s.state() is SagaState.completed
    assert s.event_names() == ["saga.completed"]


def test_a_handlers_error_with_nul_or_a_lone_surrogate_is_recorded_spelled_out() -> None:
    s = Scenario(template(handler("a", undo=False, retry=retry(1))), {"tag": "t"}).start()
    assert s.report(0, Outcome.failed, retryable=False, error="bad \x00 byte and \ud800 half")
    error = s.latest(0).error
    assert error is not None and "\x00" not in error and "\\u0000" in error and "\\ud800" in error
