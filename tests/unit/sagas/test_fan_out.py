"""Fan-out steps, run by handlers or as work items, under each completion policy (all, any,
at least k): decided as soon as the policy is met or can no longer be; compensation undoes the
members that succeeded or may have."""

from __future__ import annotations

from typing import Any

import pytest

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from tests.unit.sagas.harness import Scenario, handler, retry, template, work_item

XS = ["p", "q", "r", "s"]


def completion(policy: str) -> dict[str, Any]:
    """``all``, ``any`` or ``at_least:<k>``."""
    name, _, k = policy.partition(":")
    return {"policy": name, "k": int(k)} if k else {"policy": name}


def handlers(policy: str = "all", xs: Any = XS, **extra: Any) -> Scenario:
    fan = handler("fan", for_each="{input.xs}", completion=completion(policy), retry=retry(2), **extra)
    s = Scenario(template(handler("first"), fan, handler("last")), {"xs": xs}).start()
    s.succeed(0)
    return s


def member(s: Scenario, m: int, outcome: Outcome = Outcome.succeeded, index: int = 1, **extra: Any) -> bool:
    """Member ``m`` reports; a success carries the result ``{"m": m}`` unless ``result=`` says otherwise."""
    extra.setdefault("result", {"m": m} if outcome is Outcome.succeeded else None)
    return s.report(index, outcome, member=m, **extra)


CODES = {"S": Outcome.succeeded, "F": Outcome.failed, "L": Outcome.lost}


def play(s: Scenario, script: str, index: int = 1) -> int | None:
    """Member reports such as ``"S0 F1 L2"``; returns after how many the attempt settled."""
    for n, move in enumerate(script.split(), start=1):
        member(s, int(move[1:]), CODES[move[0]], index=index)
        if s.latest(index).outcome is not Outcome.running:
            return n
    return None


# -- handler fan-outs ------------------------------------------------------------------------


def test_a_handler_fan_out_dispatches_one_task_per_element() -> None:
    s = handlers()
    rows = s.last_sent
    ds = s.dispatches(rows)
    assert [(d.member, d.each) for d in ds] == list(enumerate(XS))
    assert [d.idempotence_key for d in ds] == [f"s-1:fan:{m}" for m in range(4)]
    assert [r["task_id"] for r in rows] == [f"s-1-1-f1-{m}" for m in range(4)]
    assert [r["shadow"] for r in rows] == [f"fan [{m}]" for m in range(4)]
    assert s.latest(1).worker == "4 members" and s.latest(1).outcome is Outcome.running
    assert [(m.member, m.each, m.outcome) for m in s.store.members] == [
        (m, x, Outcome.running) for m, x in enumerate(XS)
    ]


R, S, F, C = StepState.running, StepState.succeeded, StepState.failed, StepState.compensating


@pytest.mark.parametrize(
    ("policy", "script", "settles_after", "verdict", "state"),
    [
        ("all", "S0 S1 S2 S3", 4, Outcome.succeeded, S),
        ("all", "S0 S1 S2", None, None, R),
        ("all", "S0 F1", 2, Outcome.failed, C),  # 0 succeeded, 2 and 3 may still: undone
        ("all", "L2", 1, Outcome.failed, C),
        ("any", "S2", 1, Outcome.succeeded, S),
        ("any", "F0 F1 S2", 3, Outcome.succeeded, S),
        ("any", "F0 F1 F2", None, None, R),
        ("any", "F0 F1 F2 L3", 4, Outcome.failed, C),
        ("any", "F0 F1 F2 F3", 4, Outcome.failed, F),  # no member did anything: nothing to undo
        ("at_least:2", "S0 F1 S2", 3, Outcome.succeeded, S),
        ("at_least:2", "F0 F1 S2", None, None, R),
        ("at_least:2", "F0 F1 S2 F3", 4, Outcome.failed, C),
        ("at_least:3", "F0 F1", 2, Outcome.failed, C),
        ("at_least:3", "S0 S1 S3", 3, Outcome.succeeded, S),
        ("at_least:4", "S0 S1 S2 S3", 4, Outcome.succeeded, S),
    ],
)
def test_a_handler_fan_out_settles_as_soon_as_its_policy_decides(
    policy: str, script: str, settles_after: int | None, verdict: Outcome | None, state: StepState
) -> None:
    s = handlers(policy)
    assert play(s, script) == settles_after
    assert s.latest(1).outcome is (verdict or Outcome.running)
    assert s.saga.steps[1].state is state
    assert s.saga.steps[1].attempts == (0 if verdict is None else 1)


def test_a_fan_out_that_succeeds_keeps_each_members_result_and_moves_on() -> None:
    s = handlers("at_least:2")
    play(s, "F0 S1 S3")
    assert s.saga.results["fan"] == [None, {"m": 1}, None, {"m": 3}]
    assert s.latest(1).worker == "2 of 4 members succeeded"
    assert s.moves()[-1] == ("last", "forward", 1)


def test_reports_of_members_after_the_verdict_are_dropped() -> None:
    s = handlers("any")
    play(s, "S0")
    assert member(s, 1) is False
    assert s.store.members[1].outcome is Outcome.running  # left to finish; its outcome stays unknown
    assert s.moves().count(("last", "forward", 1)) == 1


def test_a_duplicate_member_report_changes_nothing() -> None:
    s = handlers("all")
    member(s, 0)
    member(s, 0, result={"m": "again"})
    assert s.store.members[0].result == {"m": 0}
    assert s.latest(1).outcome is Outcome.running
    play(s, "S1 S2 S3")
    assert s.saga.results["fan"][0] == {"m": 0}


def test_a_duplicate_failure_is_not_counted_twice() -> None:
    s = handlers("at_least:2", xs=["p", "q", "r"])
    play(s, "F0 F0")
    assert s.latest(1).outcome is Outcome.running  # one failed of three: two can still succeed


def test_a_member_row_records_what_became_of_it() -> None:
    s = handlers()
    member(s, 2, Outcome.failed, error="bad doc")
    row = s.store.members[2]
    assert (row.outcome, row.worker, row.error, row.result) == (Outcome.failed, "w-1", "Boom: bad doc", None)


@pytest.mark.parametrize("policy", ["all", "any"])
def test_an_empty_list_succeeds_at_once(policy: str) -> None:
    s = handlers(policy, xs=[])
    assert s.saga.steps[1].state is StepState.succeeded
    assert s.saga.results["fan"] == []
    assert s.latest(1).outcome is Outcome.succeeded and s.store.members == []
    assert s.moves()[-1] == ("last", "forward", 1)


@pytest.mark.parametrize(
    ("policy", "xs", "message"),
    [("at_least:1", [], "0 member(s), 1 needed"), ("at_least:3", ["p", "q"], "2 member(s), 3 needed")],
)
def test_a_list_too_short_for_the_policy_fails_at_once(policy: str, xs: list[str], message: str) -> None:
    s = handlers(policy, xs=xs)
    assert s.latest(1).outcome is Outcome.failed and s.latest(1).error == f"FanOutFailed: {message}"
    assert s.saga.steps[1].state is StepState.failed and s.saga.steps[1].attempts == 1
    assert not [d for d in s.dispatches() if d.step == "fan"]
    assert s.moves()[-1] == ("first", "compensate", 1)


@pytest.mark.parametrize(("xs", "type_name"), [("pqr", "str"), ({"p": 1}, "dict"), (3, "int"), (None, "NoneType")])
def test_a_for_each_that_is_not_a_list_fails_at_once(xs: Any, type_name: str) -> None:
    s = handlers(xs=xs)
    assert s.latest(1).error == f"FanOutFailed: for_each {{input.xs}} is not a list but {type_name}"
    assert s.saga.steps[1].state is StepState.failed
    assert s.state() is SagaState.compensating


def test_a_fan_out_over_an_earlier_result() -> None:
    fan = handler("fan", for_each="{results.first.ids}")
    s = Scenario(template(handler("first"), fan)).start()
    s.report(0, result={"ids": [10, 20]})
    assert [(d.member, d.each) for d in s.dispatches(s.last_sent)] == [(0, 10), (1, 20)]


def test_a_failed_fan_out_undoes_the_members_that_succeeded_or_may_have() -> None:
    s = handlers("at_least:3")
    assert play(s, "S0 L1 F2") == 3  # member 3 still running
    assert s.saga.steps[1].state is StepState.compensating
    assert s.saga.results["fan"] == [{"m": 0}, None, None, None]
    undo = s.dispatches(s.last_sent)
    assert [(d.phase, d.member, d.each, d.handler) for d in undo] == [
        (Phase.compensate, 0, "p", "undo_fan"),
        (Phase.compensate, 1, "q", "undo_fan"),
        (Phase.compensate, 3, "s", "undo_fan"),
    ]
    assert [d.idempotence_key for d in undo] == ["s-1:fan:0:compensate", "s-1:fan:1:compensate", "s-1:fan:3:compensate"]
    assert (s.latest(1).error or "").startswith("FanOutFailed: 2 of 4 members failed")


def test_undoing_a_fan_out_needs_every_member_undone_then_goes_below() -> None:
    s = handlers("all")
    play(s, "S0 F1")
    for m in (0, 2, 3):
        assert s.saga.steps[1].state is StepState.compensating
        member(s, m, phase=Phase.compensate)
    assert s.saga.steps[1].state is StepState.compensated
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_failed_undo_of_a_member_retries_the_whole_undo() -> None:
    s = handlers("all", compensate_retry=retry(3, 40))
    play(s, "S0 S1 F2")  # 3 still running
    member(s, 0, phase=Phase.compensate)
    member(s, 1, Outcome.failed, phase=Phase.compensate)
    assert s.latest(1, Phase.compensate).outcome is Outcome.failed
    assert [t.kind for t in s.timers.values()] == [TimerKind.dispatch]
    s.fire_retry(1, Phase.compensate)
    assert [(d.member, d.attempt) for d in s.dispatches(s.last_sent)] == [(0, 2), (1, 2), (3, 2)]


def test_a_fan_out_where_no_member_did_anything_is_not_undone() -> None:
    s = handlers("any", xs=["p", "q"])
    play(s, "F0 F1")
    assert s.saga.steps[1].state is StepState.failed
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_later_failure_undoes_the_members_of_the_fan_outs_last_attempt() -> None:
    s = handlers("any")
    play(s, "F0 S1")  # 2 and 3 still running when the step succeeded
    s.report(2, Outcome.failed, retryable=False)
    assert [d.member for d in s.dispatches(s.last_sent)] == [1, 2, 3]


def test_a_fan_out_that_times_out_is_retried_as_a_whole() -> None:
    s = handlers("all")
    play(s, "S0 S1")
    s.time_out(1)
    assert s.saga.steps[1].state is StepState.retry_wait
    s.fire_retry(1)
    assert [(d.member, d.attempt) for d in s.dispatches(s.last_sent)] == [(m, 2) for m in range(4)]
    play(s, "S0 S1 S2 S3")
    assert s.step_states()[1] is StepState.succeeded


def test_a_fan_out_over_nothing_has_nothing_to_undo() -> None:
    s = handlers("all", xs=[])
    s.report(2, Outcome.failed, retryable=False)
    assert s.latest(1, Phase.compensate).outcome is Outcome.succeeded
    assert s.saga.steps[1].state is StepState.compensated
    assert s.moves()[-1] == ("first", "compensate", 1)


# -- work-item fan-outs ----------------------------------------------------------------------

WITHDRAW = {
    "type": "task",
    "title": "Withdraw {each}",
    "tenant": "acme",
    "offer": {"type": "agent", "capability": "review"},
}


def items(policy: str = "all", docs: Any = ("d0", "d1", "d2"), **extra: Any) -> Scenario:
    review = work_item(
        "review",
        title="Review {each} ({each_index}) for {input.tag}",
        for_each="{input.docs}",
        completion=completion(policy),
        **({"compensate_work_item": WITHDRAW} | extra),
    )
    s = Scenario(template(handler("first"), review, handler("last")), {"docs": list(docs), "tag": "t"}).start()
    s.succeed(0)
    return s


def item_id(m: int, phase: str = "forward", attempt: int = 1) -> str:
    return f"item:s-1:1:{phase}:{attempt}:{m}"


def test_a_work_item_fan_out_opens_one_item_per_element() -> None:
    s = items()
    assert [i.title for i in s.open_items(1)] == ["Review d0 (0) for t", "Review d1 (1) for t", "Review d2 (2) for t"]
    assert [i.meta["each"] for i in s.open_items(1)] == ["d0", "d1", "d2"]
    assert s.last_sent == []  # nobody is sent a task: people and agents claim the items
    assert s.latest(1).worker == "3 work items" and s.latest(1).outcome is Outcome.running


@pytest.mark.parametrize(
    ("policy", "ends", "verdict", "cancelled"),
    [
        ("all", [("done", 0), ("done", 1), ("done", 2)], Outcome.succeeded, []),
        ("all", [("done", 0), ("failed", 1)], Outcome.failed, [2]),
        ("any", [("failed", 0), ("done", 2)], Outcome.succeeded, [1]),
        ("any", [("cancelled", 0), ("failed", 1), ("failed", 2)], Outcome.failed, []),
        ("at_least:2", [("done", 1), ("done", 2)], Outcome.succeeded, [0]),
        ("at_least:2", [("failed", 0), ("failed", 1)], Outcome.failed, [2]),
    ],
)
def test_a_work_item_fan_out_settles_on_its_policy_and_cancels_the_open_items(
    policy: str, ends: list[tuple[str, int]], verdict: Outcome, cancelled: list[int]
) -> None:
    s = items(policy)
    for status, m in ends[:-1]:
        s.finish_item(item_id(m), status, result={"m": m})
        assert s.latest(1).outcome is Outcome.running
    status, m = ends[-1]
    s.finish_item(item_id(m), status, result={"m": m})
    assert s.latest(1).outcome is verdict
    assert [i for i, _ in s.store.cancelled] == [item_id(m) for m in cancelled]
    assert [i.id for i in s.open_items(1) if i.saga_phase == "forward"] == []


def test_items_left_open_are_cancelled_with_the_reason() -> None:
    s = items("any")
    s.finish_item(item_id(1), "done", result="ok")
    assert s.store.cancelled == [
        (item_id(0), "its fan-out's completion policy was met"),
        (item_id(2), "its fan-out's completion policy was met"),
    ]
    assert s.saga.results["review"] == [None, "ok", None]
    assert s.moves()[-1] == ("last", "forward", 1)


def test_a_duplicate_item_report_changes_nothing() -> None:
    s = items("at_least:2")
    s.finish_item(item_id(0), "done", result=1)
    assert s.finish_item(item_id(0), "done", result=1) is True  # applied: the attempt is still running
    assert s.latest(1).outcome is Outcome.running and s.store.cancelled == []
    s.finish_item(item_id(1), "failed")
    s.finish_item(item_id(1), "failed")
    assert s.latest(1).outcome is Outcome.running  # one done, one failed, one open: still possible


def test_a_work_item_fan_out_over_an_empty_list_succeeds_at_once() -> None:
    s = items(docs=())
    assert s.store.items == {} and s.saga.steps[1].state is StepState.succeeded
    assert s.moves()[-1] == ("last", "forward", 1)


def test_a_work_item_fan_out_too_short_fails_at_once() -> None:
    s = items("at_least:4")
    assert s.latest(1).outcome is Outcome.failed and s.latest(1).error == "FanOutFailed: 3 member(s), 4 needed"
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_failed_work_item_fan_out_undoes_only_the_items_that_were_done() -> None:
    s = items("all")
    s.finish_item(item_id(1), "done", result="r1")
    s.finish_item(item_id(0), "failed")
    assert s.saga.steps[1].state is StepState.compensating
    (undo,) = s.open_items(1)
    assert undo.id == item_id(1, "compensate") and undo.title == "Withdraw d1"
    s.finish_item(undo.id, "done")
    assert s.step_states()[1] is StepState.compensated
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_a_failed_work_item_fan_out_with_nothing_done_is_not_undone() -> None:
    s = items("any", docs=("d0",))
    s.finish_item(item_id(0), "failed")
    assert s.saga.steps[1].state is StepState.failed
    assert s.moves()[-1] == ("first", "compensate", 1)


def test_work_items_undone_by_a_handler_fan_out_over_the_done_members() -> None:
    s = items("any", compensate_work_item=None, compensate="withdraw", capability="review")
    s.finish_item(item_id(2), "done")
    s.report(2, Outcome.failed, retryable=False)
    undo = s.dispatches(s.last_sent)
    assert [(d.handler, d.member, d.each, d.phase) for d in undo] == [("withdraw", 2, "d2", Phase.compensate)]
