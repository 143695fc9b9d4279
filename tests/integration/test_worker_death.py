"""A whole worker host dies (main process and pool, kill -9): what it held comes back, or the step's
deadline moves the saga on.

The stack runs on the default visibility timeout: a worker that dies holding a dispatch no longer
renews it, so any live process gives it back to the queue within seconds, not the hour a plain
kombu visibility timeout would take."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from orchestrator.local.stack import WorkerSpec
from tests.conftest import BACKENDS
from tests.integration.flower import flower_view
from tests.integration.harness import HANDLERS, Harness, running_harness
from tests.integration.templates import FAST_RETRY
from tests.support import RedisTarget, eventually

DEADLINED = {
    "name": "it.deadlined",
    "version": "1.0.0",
    "steps": [
        {"name": "one", "capability": "alpha", "handler": "one", "retry": FAST_RETRY},
        # Attempts time out until the replacement worker is up, which on a loaded machine takes
        # longer than three of them: enough attempts to outlast a slow start.
        {
            "name": "two",
            "capability": "beta",
            "handler": "two",
            "retry": {**FAST_RETRY, "max_attempts": 20},
            "timeout_ms": 1500,
        },
    ],
}


# Step two has no timeout_ms: its deadline is the step watchdog's hour, so only the dispatch the
# dead worker held coming back can move the saga on in time.
UNTIMED = {
    "name": "it.untimed",
    "version": "1.0.0",
    "steps": [
        {"name": "one", "capability": "alpha", "handler": "one", "retry": FAST_RETRY},
        {"name": "two", "capability": "beta", "handler": "two", "retry": FAST_RETRY},
    ],
}


# The same, with no retry left for step two: its outcome is unknown, so it is compensated too.
DEADLINED_ONCE = {
    "name": "it.deadlined-once",
    "version": "1.0.0",
    "steps": [
        {"name": "one", "capability": "alpha", "handler": "one", "compensate": "undo_one", "retry": FAST_RETRY},
        {
            "name": "two",
            "capability": "beta",
            "handler": "two",
            "compensate": "undo_two",
            "retry": {**FAST_RETRY, "max_attempts": 1},
            # The compensation runs on the replacement worker, which may take longer to start
            # than the step's 1.5 s timeout on a loaded machine: it is retried until it is up.
            "compensate_retry": {"max_attempts": 10, "initial_ms": 200, "max_ms": 2000, "jitter": 0.0},
            "timeout_ms": 1500,
        },
    ],
}


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("death")
    with running_harness(
        str(request.param), tmp, redis_target, [DEADLINED, DEADLINED_ONCE, UNTIMED], watchdog_grace_s=1
    ) as h:
        yield h


def kill_beta_mid_step(harness: Harness, template: str, tag: str) -> tuple[str, str]:
    """Submit a saga, kill -9 the beta worker host while step two runs, start another; returns
    the saga's id and the killed worker's Celery node name."""
    saga_id = harness.submit(template, {"tag": tag, "behaviour": {"two": {"hang_first_call": True}}})
    eventually(lambda: harness.books.get(f"test:pid:{tag}"), what="step two to start")
    beta = next(
        c for c in harness.stack.supervisor.children if c.name.startswith("worker-beta") and c.process.poll() is None
    )
    killed = next(n for n in harness.stack.worker_names if f"worker-{n.split('@')[0]}" == beta.name)
    os.killpg(beta.process.pid, signal.SIGKILL)  # the main process and its pool, no warm shutdown
    beta.process.wait()
    harness.stack.start_worker(WorkerSpec(["beta"], HANDLERS, concurrency=1))
    return saga_id, killed


def test_a_dead_worker_host_times_the_attempt_out_and_another_worker_finishes(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga = harness.wait_final(kill_beta_mid_step(harness, "it.deadlined", tag)[0])
    assert saga.state == "completed"
    two = [(a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two"]
    assert two[0] == (1, "timed_out") and two[-1][1] == "succeeded"
    assert harness.effects(tag) == ["one", "two"]


def test_a_step_that_ends_on_an_unknown_outcome_is_compensated_too(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga = harness.wait_final(kill_beta_mid_step(harness, "it.deadlined-once", tag)[0])
    assert saga.state == "compensated", [(a.step_name, a.phase, a.attempt, a.outcome, a.error) for a in saga.attempts]
    # Compensation attempts that timed out while the replacement worker started are retried.
    settled = [
        (a.step_name, a.phase, a.outcome) for a in saga.attempts if a.outcome != "timed_out" or a.phase == "forward"
    ]
    assert settled == [
        ("one", "forward", "succeeded"),
        ("two", "forward", "timed_out"),
        ("two", "compensate", "succeeded"),
        ("one", "compensate", "succeeded"),
    ]
    # Step two did its work before its worker died: undoing it was right.
    assert harness.effects(tag) == ["one", "two", "two:compensate", "one:compensate"]


def test_a_dead_workers_dispatch_comes_back_and_the_attempt_is_recorded_lost(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    # Well inside the step watchdog's hour: the dispatch came back, the deadline did not fire.
    with flower_view(harness.settings) as flower:
        saga_id, killed = kill_beta_mid_step(harness, "it.untimed", tag)
        saga = harness.wait_final(saga_id, timeout=90)
        # In Flower, the dispatch's redelivery ends as FAILURE and names the worker that died.
        task = flower.task(f"{saga_id}-1-f1", "FAILURE")
        assert (task.exception or "").startswith(f"WorkerLost('the delivery of this attempt on {killed} died")
    assert saga.state == "completed"
    two = [(a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two"]
    assert two[0] == (1, "lost") and two[-1][1] == "succeeded"
    # The timeline names the worker that ran the lost attempt and died, not the one that noticed.
    lost = next(a for a in saga.attempts if a.step_name == "two" and a.outcome == "lost")
    assert lost.worker == killed, (lost.worker, killed, lost.error)
    assert harness.effects(tag) == ["one", "two"]
