"""What Flower shows of each step attempt: Celery's task events, received over the broker into
Celery's own ``State`` as Flower receives them, from real workers running real handlers.

A step that succeeded is SUCCESS with its handler's result; one that failed is FAILURE with the
error the orchestrator was told (type, message, whether it may be retried, and the handler's
traceback); a step deferred for its mutex, which the orchestrator always dispatches again, is
RETRY. Each such message is still acknowledged once (Celery neither retries nor requeues it), and
the saga goes on exactly as the reports say.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from config import keys
from tests.integration.flower import FlowerView, flower_view
from tests.integration.harness import Harness, running_harness
from tests.integration.templates import FAST_RETRY, LOCKED, THREE_STEPS
from tests.support import RedisTarget, as_text, eventually

UNKNOWN_HANDLER = {
    "name": "it.unknown-handler",
    "version": "1.0.0",
    "steps": [{"name": "lonely", "capability": "alpha", "handler": "nobody", "retry": FAST_RETRY}],
}


@pytest.fixture(scope="module")
def harness(redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("flower")
    # A step that finds its mutex held waits this long before it is deferred.
    with running_harness("sqlite", tmp, redis_target, [THREE_STEPS, LOCKED, UNKNOWN_HANDLER], lease_wait_ms=100) as h:
        yield h


@pytest.fixture
def flower(harness: Harness) -> Iterator[FlowerView]:
    with flower_view(harness.settings) as view:
        yield view


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def acknowledged_once(harness: Harness, flower: FlowerView, task_id: str) -> None:
    """The task's message was received once and acknowledged: not held, not back in a queue."""

    def held() -> list[str]:
        unacked = [as_text(v) for v in harness.books.hvals("unacked")]
        queued = [as_text(m) for q in ("alpha", "beta") for m in harness.books.lrange(keys.capability_queue(q), 0, -1)]
        return [m for m in unacked + queued if task_id in m]

    eventually(lambda: not held(), timeout=10, what=f"task {task_id}'s message to be acknowledged")
    with flower.lock:
        assert flower.received[task_id] == 1


def test_a_step_that_succeeds_is_success_with_its_result(harness: Harness, flower: FlowerView) -> None:
    saga_id = harness.submit("it.three", {"tag": _tag()})
    assert harness.wait_final(saga_id).state == "completed"
    task = flower.task(f"{saga_id}-0-f1", "SUCCESS")
    assert "'step': 'one'" in (task.result or ""), task.result
    assert task.name == "one" and task.hostname in flower.workers()


def test_a_step_that_fails_for_good_is_failure_with_its_error(harness: Harness, flower: FlowerView) -> None:
    saga_id = harness.submit(
        "it.three", {"tag": _tag(), "behaviour": {"three": {"fail_always": True, "retryable": False}}}
    )
    saga = harness.wait_final(saga_id)
    assert saga.state == "compensated"
    assert [(a.step_name, a.phase, a.outcome) for a in saga.attempts] == [
        ("one", "forward", "succeeded"),
        ("two", "forward", "succeeded"),
        ("three", "forward", "failed"),
        ("two", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    task = flower.task(f"{saga_id}-2-f1", "FAILURE")
    assert task.exception == "StepFailed('three failed on call 1', retryable=False)"
    # The handler's own traceback, where it raised: what an operator opens the task for.
    assert "tests/integration/handlers.py" in (task.traceback or "") and "_handle" in (task.traceback or "")
    acknowledged_once(harness, flower, f"{saga_id}-2-f1")
    flower.task(f"{saga_id}-1-c1", "SUCCESS")  # the compensations that followed


def test_a_retryable_failure_is_failure_and_says_it_may_be_retried(harness: Harness, flower: FlowerView) -> None:
    saga_id = harness.submit("it.three", {"tag": _tag(), "behaviour": {"two": {"fail_times": 1}}})
    saga = harness.wait_final(saga_id)
    assert saga.state == "completed"
    assert [a.outcome for a in saga.attempts if a.step_name == "two"] == ["failed", "succeeded"]
    first = flower.task(f"{saga_id}-1-f1", "FAILURE")
    assert first.exception == "StepFailed('two failed on call 1', retryable=True)"
    acknowledged_once(harness, flower, f"{saga_id}-1-f1")
    # The orchestrator's retry is a task of its own.
    flower.task(f"{saga_id}-1-f2", "SUCCESS")


def test_a_step_with_no_handler_on_the_worker_is_failure(harness: Harness, flower: FlowerView) -> None:
    saga_id = harness.submit("it.unknown-handler", {"tag": _tag()})
    saga = harness.wait_final(saga_id)
    assert saga.state == "compensated" and [a.outcome for a in saga.attempts] == ["failed"]
    task = flower.task(f"{saga_id}-0-f1", "FAILURE")
    assert (task.exception or "").startswith("UnknownHandler(\"no handler 'nobody' is registered on worker ")
    assert (task.exception or "").endswith("retryable=False)")
    acknowledged_once(harness, flower, f"{saga_id}-0-f1")


def test_a_step_deferred_for_its_mutex_is_retry(harness: Harness, flower: FlowerView) -> None:
    account = _tag()
    lease = keys.mutex_lease(f"acct:{account}")
    harness.books.set(lease, "another-step", px=60_000)  # another step holds the scope
    saga_id = harness.submit("it.locked", {"tag": _tag(), "account": account})
    task = flower.task(f"{saga_id}-0-f1", "RETRY")
    assert (task.exception or "").startswith("MutexBusy(")
    acknowledged_once(harness, flower, f"{saga_id}-0-f1")
    harness.books.delete(lease)
    saga = harness.wait_final(saga_id)
    assert saga.state == "completed"
    assert {a.outcome for a in saga.attempts[:-1]} == {"deferred"} and saga.attempts[-1].outcome == "succeeded"
    flower.task(f"{saga_id}-0-f{saga.attempts[-1].attempt}", "SUCCESS")
