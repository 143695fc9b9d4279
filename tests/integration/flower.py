"""Flower's view of a running stack, for the tests: Celery's task events taken off the broker by
an event receiver into Celery's ``State``, as Flower takes them."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.events.state import State
from celery.events.state import Task as TaskState

from config.settings import Settings
from tests.support import eventually
from workers.celery.app import create_app


class FlowerView:
    """Celery's task events, taken off the broker by an event receiver into a ``State``, as Flower does."""

    def __init__(self, settings: Settings):
        self.app = create_app(settings)
        self.state = State()
        self.received: Counter[str] = Counter()  # task-received events per task id
        self.lock = threading.Lock()
        self.stopping = False
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="flower-view")
        self.thread.start()
        # Events before the subscription are lost: it is live once the workers answered the
        # receiver's wake-up with a heartbeat.
        eventually(lambda: self.workers(), timeout=30, what="the workers' heartbeats")

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self._event})
            self.receiver.should_stop = self.stopping
            for _ in self.receiver.consume(limit=None, timeout=None, safety_interval=0.2, wakeup=True):
                pass

    def _event(self, event: dict[str, Any]) -> None:
        with self.lock:
            if event.get("type") == "task-received":
                self.received[str(event.get("uuid"))] += 1
            self.state.event(event)

    def workers(self) -> list[str]:
        with self.lock:
            return [w.hostname for w in self.state.workers.values() if w.hostname]

    def task(self, task_id: str, state: str) -> TaskState:
        """The task as Flower sees it, once it reached ``state``."""

        def reached() -> TaskState | None:
            with self.lock:
                found = self.state.tasks.get(task_id)
                return found if found is not None and found.state == state else None

        def seen() -> str:
            with self.lock:
                found = self.state.tasks.get(task_id)
                return "never seen" if found is None else f"{found.state} {found.exception or found.result}"

        try:
            return eventually(reached, timeout=20, what=f"task {task_id} to be {state}")
        except AssertionError:
            raise AssertionError(f"task {task_id} never became {state}: {seen()}") from None

    def stop(self) -> None:
        self.stopping = True
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=10)


@contextmanager
def flower_view(settings: Settings) -> Iterator[FlowerView]:
    """A :class:`FlowerView` of the stack ``settings`` name, listening until the block ends."""
    view = FlowerView(settings)
    try:
        yield view
    finally:
        view.stop()
