"""Saga scenarios on real workers, on SQLite and PostgreSQL, with messages delivered once and twice."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from models.api import SagaRead
from models.work_tables import WorkItem
from tests.integration.harness import Harness


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _timeline(saga: SagaRead) -> list[tuple[str, str, str]]:
    return [(a.step_name, a.phase, a.outcome) for a in saga.attempts]


def _input(tag: str, **behaviour: dict[str, Any]) -> dict[str, Any]:
    return {"tag": tag, "behaviour": behaviour}


def test_happy_path_runs_each_step_once(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.three", _input(tag)))
    assert saga.state == "completed"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("two", "forward", "succeeded"),
        ("three", "forward", "succeeded"),
    ]
    assert harness.effects(tag) == ["one", "two", "three"]
    # Workyard's dedup, not the handler's own, keeps a duplicated dispatch from calling it again.
    assert harness.calls(tag) == {"one": 1, "two": 1, "three": 1}
    assert saga.results["three"] == {"step": "three", "calls": 1}


def test_permanent_failure_compensates_in_reverse_order(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.three", _input(tag, three={"fail_always": True, "retryable": False})))
    assert saga.state == "compensated"
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("two", "forward", "succeeded"),
        ("three", "forward", "failed"),
        ("two", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    assert harness.effects(tag) == ["one", "two", "two:compensate", "one:compensate"]
    assert [s.state for s in saga.steps] == ["compensated", "compensated", "failed"]
    assert "three" in (saga.error or "")


def test_retryable_failure_is_retried_on_a_durable_timer(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.three", _input(tag, two={"fail_times": 2})))
    assert saga.state == "completed"
    assert [(a.step_name, a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two"] == [
        ("two", 1, "failed"),
        ("two", 2, "failed"),
        ("two", 3, "succeeded"),
    ]
    assert saga.steps[1].attempts == 3
    assert harness.calls(tag)["two"] == 3
    assert harness.effects(tag) == ["one", "two", "three"]


def test_retries_are_capped_then_the_saga_compensates(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.three", _input(tag, two={"fail_always": True})))
    assert saga.state == "compensated"
    assert [a.outcome for a in saga.attempts if a.step_name == "two" and a.phase == "forward"] == ["failed"] * 3
    assert saga.steps[1].attempts == 3
    assert harness.effects(tag) == ["one", "one:compensate"]


def test_a_compensation_that_fails_twice_then_succeeds(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(
        harness.submit(
            "it.three",
            _input(tag, three={"fail_always": True, "retryable": False}, **{"two:compensate": {"fail_times": 2}}),
        )
    )
    assert saga.state == "compensated"
    undo_two = [(a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two" and a.phase == "compensate"]
    assert undo_two == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert _timeline(saga)[-1] == ("one", "compensate", "succeeded")
    assert harness.effects(tag) == ["one", "two", "two:compensate", "one:compensate"]
    assert harness.calls(tag)["two:compensate"] == 3


def test_a_compensation_that_never_succeeds_ends_compensation_failed(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(
        harness.submit(
            "it.three",
            _input(tag, three={"fail_always": True, "retryable": False}, **{"two:compensate": {"fail_always": True}}),
        )
    )
    assert saga.state == "compensation_failed"
    assert saga.steps[1].state == "compensation_failed"
    assert saga.steps[1].compensation_attempts == 4
    # Strict order: step one is not compensated before step two's compensation succeeded.
    assert "one:compensate" not in harness.calls(tag)
    assert "compensation of step 'two'" in (saga.error or "")
    # A person is asked to finish the job: one remediation item, in the operations tenant.
    with harness.wiring.sessions() as session:
        items = session.scalars(select(WorkItem).where(WorkItem.saga_id == saga.id)).all()
    assert [(i.type, i.tenant, i.status, i.saga_step) for i in items] == [("remediation", "ops", "planned", "two")]
    assert items[0].payload["incidentRef"] == f"saga:{saga.id}"


def test_the_same_idempotence_key_never_starts_a_second_saga(harness: Harness) -> None:
    tag = _tag()
    first = harness.submit("it.three", _input(tag), key=f"job-{tag}")
    again = harness.submit("it.three", _input(tag), key=f"job-{tag}")
    assert first == again
    harness.wait_final(first)
    assert harness.calls(tag) == {"one": 1, "two": 1, "three": 1}


def _fan_input(tag: str, members: int, failing: range) -> dict[str, Any]:
    permanent = {"fail_always": True, "retryable": False}
    return {
        "tag": tag,
        "items": [f"doc-{n}" for n in range(members)],
        "behaviour": {f"fan[{n}]": permanent for n in failing},
    }


def test_a_handler_fan_out_meets_its_policy_and_collects_each_members_result(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.fan_out_handlers", _fan_input(tag, 10, range(3))))
    assert saga.state == "completed", saga.error
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("fan", "forward", "succeeded"),
        ("three", "forward", "succeeded"),
    ]
    # Each member once, with its own element; the three that failed left no effect and no result.
    effects = harness.effects(tag)
    assert sorted(e for e in effects if e.startswith("fan")) == sorted(f"fan[{n}]" for n in range(3, 10))
    assert effects[0] == "one" and effects[-1] == "three"
    results = saga.results["fan"]
    assert results[:3] == [None, None, None]
    assert [r["each"] for r in results[3:]] == [f"doc-{n}" for n in range(3, 10)]
    assert all(calls == 1 for name, calls in harness.calls(tag).items() if name.startswith("fan"))


def test_a_failed_handler_fan_out_compensates_each_member_that_succeeded(harness: Harness) -> None:
    tag = _tag()
    saga = harness.wait_final(harness.submit("it.fan_out_handlers", _fan_input(tag, 10, range(4))))
    assert saga.state == "compensated", saga.error
    assert _timeline(saga) == [
        ("one", "forward", "succeeded"),
        ("fan", "forward", "failed"),
        ("fan", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    effects = harness.effects(tag)
    undone = [e for e in effects if e.endswith(":compensate") and e.startswith("fan")]
    # Six members succeeded, or were still running when the fan-out failed: each is undone
    # once, before step one is.
    assert sorted(undone) == sorted(f"fan[{n}]:compensate" for n in range(4, 10))
    assert effects[-1] == "one:compensate"
    # Decided at the fourth failure: from then on at most 6 could succeed.
    assert "FanOutFailed: 4 of 10 members failed, 7 must succeed" in (saga.error or "")


def test_a_worker_pool_process_keeps_its_startup_heap_out_of_the_collectors_sight(harness: Harness) -> None:
    # config.heap: a full collection in a pool process would walk everything the worker imported,
    # holding the step (and the worker's slot) meanwhile.
    harness.register(
        {"name": "it.heap", "version": "1.0.0", "steps": [{"name": "heap", "capability": "alpha", "handler": "heap"}]}
    )
    saga = harness.wait_final(harness.submit("it.heap", {"tag": _tag()}))
    assert saga.state == "completed"
    found = saga.results["heap"]
    assert found["frozen"] > 10_000, found
    # Python's own: handlers are anyone's code, whose cycles may hold much (config.heap).
    assert tuple(found["thresholds"]) == (700, 10, 10)
