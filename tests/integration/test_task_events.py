"""Flower's view of a worker and of the dispatches: every step's task events, and every dispatch's
task-sent event, arrive, batched into few broker messages."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.dispatcher import FLUSH_AFTER_S
from tests.faults.servers import RedisServer
from tests.integration.harness import database_wiring, running_harness
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually, kombu_envelope, redis_target_from_url
from workers.celery.events import EVENT_BUFFER_LIMIT, EVENT_FLUSH_S

SAGAS = 10
TASK_EVENTS = ("task-received", "task-started", "task-succeeded")


class EventTap:
    """Listens to the broker's event channels the way Flower does, counting messages and events."""

    def __init__(self, target: RedisTarget):
        self.client = target.client()  # kept: a client that is collected closes its pool's connections
        self.pubsub = self.client.pubsub()
        self.messages = 0
        self.sent_messages = 0  # messages carrying task-sent events
        self.events: list[dict[str, Any]] = []
        # When each message of a worker's task events arrived, by the worker's hostname.
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        # Decoded by hand: the envelope is kombu's, the body Celery's JSON event (or list of them).
        # Pub/sub channels span every Redis database: kombu prefixes its fanout channels with the
        # database ("/<db>.celeryev/..."), so listen to this target's only, not a neighbour's stack.
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.pubsub.psubscribe(**{f"/{db}.celeryev*": lambda message: self.handle(message["data"])})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def handle(self, raw: Any) -> None:
        _, body = kombu_envelope(raw)
        # Celery's task.multi carries a list of events; a single event is a dict.
        events = json.loads(body)
        events = events if isinstance(events, list) else [events]
        with self.lock:
            # Only the worker's own task events: task-sent comes from the publisher, heartbeats
            # from the worker's timer, each in a message of its own either way.
            task_events = [e for e in events if e.get("type") in TASK_EVENTS]
            if task_events:
                self.messages += 1
                self.arrivals[str(task_events[0].get("hostname"))].append(time.monotonic())
            if any(e.get("type") == "task-sent" for e in events):
                self.sent_messages += 1
            self.events.extend(events)

    def stop(self) -> None:
        self.thread.stop()  # closes the pubsub connection once the thread has let go of it
        self.thread.join(timeout=10)
        self.client.close()


@pytest.fixture
def tap(clean_redis: RedisTarget) -> Iterator[EventTap]:
    listening = EventTap(clean_redis)
    try:
        yield listening
    finally:
        listening.stop()


def test_every_step_reports_its_task_events_in_few_messages(
    tmp_path: Path, clean_redis: RedisTarget, tap: EventTap
) -> None:
    with running_harness("sqlite", tmp_path, clean_redis, [THREE_STEPS]) as harness:
        ids = [harness.submit("it.three", {"tag": f"ev{i}"}) for i in range(SAGAS)]
        for saga_id in ids:
            assert harness.wait_final(saga_id).state == "completed"

        def seen() -> Counter[tuple[str, str]]:
            with tap.lock:
                return Counter(
                    (e["type"], e["uuid"]) for e in tap.events if e.get("type") in TASK_EVENTS and "uuid" in e
                )

        steps = 3 * SAGAS
        eventually(lambda: len(seen()) >= steps * len(TASK_EVENTS), timeout=20, what="every step's task events")
        by_type = Counter(kind for kind, _ in seen())
        assert by_type == dict.fromkeys(TASK_EVENTS, steps)
        events = steps * len(TASK_EVENTS)
        with tap.lock:
            messages = tap.messages
        # Sent one by one, 90 events take about 90 messages (Celery flushes at each loop tick).
        assert messages * 2 <= events, f"{events} task events came in {messages} messages"
        # Each worker's main process flushes at most once per window (plus one at its buffer's
        # limit): each flush is time in which it picks up no dispatch. One spare window for the
        # jitter of a flush that a busy host ran late.
        with tap.lock:
            arrivals = {host: list(times) for host, times in tap.arrivals.items()}
        for host, times in arrivals.items():
            windows = (times[-1] - times[0]) / EVENT_FLUSH_S
            bound = int(windows) + 2 + events // EVENT_BUFFER_LIMIT
            assert len(times) <= bound, f"{host} sent {len(times)} event messages over {windows:.1f} windows"


def test_dispatches_published_together_send_their_task_sent_events_in_one_message(
    tmp_path: Path, clean_redis: RedisTarget, tap: EventTap
) -> None:
    with database_wiring("sqlite", tmp_path, clean_redis) as wiring:
        register_template(wiring.sessions, parse_template(THREE_STEPS))
        outbox = [
            row
            for n in range(SAGAS)
            for row in submit_saga(wiring.sessions, wiring.settings, template="it.three", input={"tag": f"s{n}"}).outbox
        ]
        wiring.dispatcher.publish(outbox)  # as the coordinator publishes what one batch dispatched

        def sent() -> list[dict[str, Any]]:
            with tap.lock:
                return [e for e in tap.events if e.get("type") == "task-sent"]

        eventually(lambda: len(sent()) >= SAGAS, timeout=20, what="a task-sent event per dispatch")
        events = sent()
        assert sorted(e["uuid"] for e in events) == sorted(row.payload["task_id"] for row in outbox)
        assert {(e["name"], e["queue"]) for e in events} == {("workyard.step", "cap.alpha")}
        with tap.lock:
            assert tap.sent_messages == 1, f"{SAGAS} task-sent events came in {tap.sent_messages} messages"


def _sent(tap: EventTap) -> list[dict[str, Any]]:
    with tap.lock:
        return [e for e in tap.events if e.get("type") == "task-sent"]


def test_dispatches_published_one_by_one_send_their_task_sent_events_together(
    tmp_path: Path, clean_redis: RedisTarget, tap: EventTap
) -> None:
    # As the API publishes: each submit's first step on its own, right after its transaction.
    with database_wiring("sqlite", tmp_path, clean_redis) as wiring:
        register_template(wiring.sessions, parse_template(THREE_STEPS))
        submitted = [
            submit_saga(wiring.sessions, wiring.settings, template="it.three", input={"tag": f"o{n}"})
            for n in range(SAGAS)
        ]
        started = time.monotonic()
        for one in submitted:
            wiring.dispatcher.publish(one.outbox)
        publishing_s = time.monotonic() - started
        published_at = time.time()

        eventually(lambda: len(_sent(tap)) >= SAGAS, timeout=10, what="a task-sent event per dispatch")
        events = _sent(tap)
        assert sorted(e["uuid"] for e in events) == sorted(one.outbox[0].payload["task_id"] for one in submitted)
        # Each event is stamped when its task was sent, not when the gathered events went out.
        assert all(e["timestamp"] <= published_at for e in events)
        # One message per flush window the publishing spanned (one spare for a window's edge),
        # not one per dispatch.
        bound = int(publishing_s / FLUSH_AFTER_S) + 2
        with tap.lock:
            messages = tap.sent_messages
        assert messages <= min(bound, SAGAS - 1), f"{SAGAS} task-sent events came in {messages} messages"


def test_a_closing_dispatcher_sends_the_task_sent_events_it_gathered(
    tmp_path: Path, clean_redis: RedisTarget, tap: EventTap
) -> None:
    # A process that stops (the API shutting down) sends what it gathered, not waiting for its timer.
    with database_wiring("sqlite", tmp_path, clean_redis) as wiring:
        register_template(wiring.sessions, parse_template(THREE_STEPS))
        one = submit_saga(wiring.sessions, wiring.settings, template="it.three", input={"tag": "closing"})
        wiring.dispatcher.publish(one.outbox)
        wiring.dispatcher.close()
        task_id = one.outbox[0].payload["task_id"]
        eventually(lambda: [e for e in _sent(tap) if e["uuid"] == task_id], timeout=10, what="the task-sent event")


def test_a_dispatcher_whose_broker_is_gone_still_closes(tmp_path: Path) -> None:
    # The embedded stack stops its Redis along with the API: the events the API gathered cannot
    # be sent, and trying for ever (kombu's default) kept the API from stopping.
    server = RedisServer(tmp_path / "redis", appendfsync=None)
    server.start()
    try:
        with database_wiring("sqlite", tmp_path, redis_target_from_url(server.url(0))) as wiring:
            register_template(wiring.sessions, parse_template(THREE_STEPS))
            one = submit_saga(wiring.sessions, wiring.settings, template="it.three", input={"tag": "gone"})
            wiring.dispatcher.publish(one.outbox)
            server.kill()
            closing = threading.Thread(target=wiring.dispatcher.close, daemon=True)
            closing.start()
            closing.join(timeout=60)
            assert not closing.is_alive(), "the dispatcher kept trying to send its task-sent events"
    finally:
        server.stop()
