"""Worker deaths, mutex scopes and fencing tokens, malformed messages: on real workers."""

from __future__ import annotations

import os
import signal
import uuid

from config.keys import LEASE_PATTERNS, ORCHESTRATOR_QUEUE, capability_queue
from models.tables import DeadLetter
from tests.integration.harness import Harness
from tests.support import as_text, eventually
from workers.celery.config import ORCHESTRATOR_EXCHANGE
from workers.celery.config import capability_queue as cap_queue


def test_a_worker_killed_mid_step_is_recorded_and_the_saga_still_finishes(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga_id = harness.submit("it.three", {"tag": tag, "behaviour": {"two": {"hang_first_call": True}}})
    pid = int(as_text(eventually(lambda: harness.books.get(f"test:pid:{tag}"), what="the step to start")))
    os.kill(pid, signal.SIGKILL)

    saga = harness.wait_final(saga_id)
    assert saga.state == "completed"
    two = [(a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two"]
    assert two == [(1, "lost"), (2, "succeeded")]
    assert saga.steps[1].attempts == 2
    # The handler ran twice, but with the same idempotence key, so the effect happened once.
    assert harness.calls(tag)["two"] == 2
    assert harness.effects(tag) == ["one", "two", "three"]
    keys = {as_text(k) for k in harness.books.lrange(f"test:keys:{tag}", 0, -1) if as_text(k).startswith("two=")}
    assert len(keys) == 1


def test_a_handler_past_its_timeout_is_stopped_and_its_attempt_is_a_retryable_timeout(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga_id = harness.submit("it.slow", {"tag": tag, "behaviour": {"slow": {"sleep_ms": 30_000}}})

    saga = harness.wait_final(saga_id)
    assert saga.state == "compensated"
    attempts = [(a.attempt, a.outcome) for a in saga.attempts]
    assert attempts == [(1, "failed"), (2, "failed")]  # retried once: a timeout is retryable
    for attempt in saga.attempts:
        assert attempt.error is not None and attempt.error.startswith("Timeout: step ran past its timeout of 300 ms")
    assert "gave up after 2 attempt(s)" in (saga.error or "")


def test_steps_with_one_mutex_scope_never_overlap_and_tokens_only_grow(harness: Harness) -> None:
    account = uuid.uuid4().hex[:8]
    scope = f"acct:{account}"

    def run(n: int) -> None:
        ids = [
            harness.submit(
                "it.locked", {"tag": f"{account}-{i}", "account": account, "behaviour": {"locked": {"sleep_ms": 150}}}
            )
            for i in range(n)
        ]
        for saga_id in ids:
            assert harness.wait_final(saga_id).state == "completed"

    run(4)
    # Lose every lease and fence in Redis, as a Redis restart without persistence would.
    for pattern in LEASE_PATTERNS:
        for key in harness.books.scan_iter(match=pattern):
            harness.books.delete(key)
    run(3)

    tokens = [int(t) for t in harness.books.lrange(f"test:tokens:{scope}", 0, -1)]
    assert len(tokens) >= 7
    assert tokens == sorted(set(tokens)), f"fencing tokens must strictly increase: {tokens}"
    assert harness.books.get(f"test:overlap:{scope}") is None, "two handlers held the scope at once"


def test_a_malformed_report_is_dead_lettered_with_its_reason(harness: Harness) -> None:
    before = harness.row_counts()["dead_letters"]
    with harness.wiring.app.producer_or_acquire() as producer:
        producer.publish(
            {"kind": "step_report", "saga_id": 12},
            exchange=ORCHESTRATOR_EXCHANGE,
            routing_key=ORCHESTRATOR_QUEUE,
            serializer="json",
        )
    eventually(lambda: harness.row_counts()["dead_letters"] > before, what="a dead letter")
    with harness.wiring.sessions() as session:
        letter = session.query(DeadLetter).order_by(DeadLetter.id.desc()).first()
    assert letter is not None and "malformed report" in letter.reason and "saga_id" in letter.reason


def test_a_malformed_dispatch_is_dead_lettered_by_the_worker(harness: Harness) -> None:
    before = harness.row_counts()["dead_letters"]
    queue = cap_queue("alpha")
    harness.wiring.app.send_task(
        "workyard.step", args=[{"saga_id": "x"}], queue=queue, routing_key=capability_queue("alpha"), declare=[queue]
    )
    eventually(lambda: harness.row_counts()["dead_letters"] > before, what="a dead letter")
    with harness.wiring.sessions() as session:
        letter = session.query(DeadLetter).order_by(DeadLetter.id.desc()).first()
    assert letter is not None and letter.reason.startswith("malformed step dispatch")
