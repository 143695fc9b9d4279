"""The worker's task events leave its main process seldom: one flush per window, however many
steps run in it (see workers/celery/events.py). No network: the consumer's hub and Celery's
event dispatcher are stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from workers.broker import internals
from workers.celery import events
from workers.celery.events import EVENT_BUFFER_LIMIT, EVENT_FLUSH_S, Consumer


class Hub:
    """Records what the consumer arms on its event loop."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.armed.append((delay, callback))


def consumer(hub: Hub | None) -> Any:
    c: Any = Consumer.__new__(Consumer)  # the hooks under test read only these attributes
    c.hub = hub
    c.event_dispatcher = SimpleNamespace(buffer_limit=24)  # Celery's default limit
    return c


def test_a_window_of_buffered_events_arms_one_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[Any] = []
    monkeypatch.setattr(internals, "flush_task_events", flushed.append)
    hub = Hub()
    c = consumer(hub)
    for _ in range(3 * 50):  # the events of 50 steps in one window
        c.on_send_event_buffered()
    assert [delay for delay, _ in hub.armed] == [EVENT_FLUSH_S]
    # Celery flushes at once at its buffer limit: raised, so a busy window is still one message.
    assert c.event_dispatcher.buffer_limit == EVENT_BUFFER_LIMIT >= 3 * 50
    hub.armed[0][1]()
    assert flushed == [c]
    c.on_send_event_buffered()  # the next window arms the next flush
    assert len(hub.armed) == 2


def test_the_window_and_the_limit_keep_flushes_rare() -> None:
    # At 150 steps a second (three events each) the main process flushes at most this often.
    flushes_per_second = 1 / EVENT_FLUSH_S + 3 * 150 / EVENT_BUFFER_LIMIT
    assert flushes_per_second <= 6, "each flush is main-process CPU during which no dispatch is picked up"


def test_without_an_event_loop_nothing_is_armed() -> None:
    c = consumer(None)
    c.on_send_event_buffered()
    assert c.event_dispatcher.buffer_limit == 24
    assert events.Consumer._event_flush_armed is False
