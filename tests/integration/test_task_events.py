"""Flower's view of a worker: every step's task events arrive, batched into few broker messages."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.harness import running_harness
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually, kombu_envelope

SAGAS = 10
TASK_EVENTS = ("task-received", "task-started", "task-succeeded")


class EventTap:
    """Listens to the broker's event channels the way Flower does, counting messages and events."""

    def __init__(self, target: RedisTarget):
        self.pubsub = target.client().pubsub()
        self.messages = 0
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        # Decoded by hand: the envelope is kombu's, the body Celery's JSON event (or list of them).
        self.pubsub.psubscribe(**{"*celeryev*": lambda message: self.handle(message["data"])})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def handle(self, raw: Any) -> None:
        _, body = kombu_envelope(raw)
        # Celery's task.multi carries a list of events; a single event is a dict.
        events = json.loads(body)
        events = events if isinstance(events, list) else [events]
        with self.lock:
            # Only the worker's own task events: task-sent comes from the publisher, heartbeats
            # from the worker's timer, each in a message of its own either way.
            if any(e.get("type") in TASK_EVENTS for e in events):
                self.messages += 1
            self.events.extend(events)

    def stop(self) -> None:
        self.thread.stop()  # closes the pubsub connection once the thread has let go of it
        self.thread.join(timeout=10)


def test_every_step_reports_its_task_events_in_few_messages(tmp_path: Path, clean_redis: RedisTarget) -> None:
    tap = EventTap(clean_redis)
    try:
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
    finally:
        tap.stop()
