"""Publishing to the broker: step dispatches (as Celery task messages) and reports.

Both go through the broker's default exchange, addressed by queue name: on Redis that skips
kombu's exchange-binding lookup (a round trip per message), on RabbitMQ the default exchange
routes by queue name all the same. The queues are still declared (once per connection).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from celery import Celery
from kombu.entity import Queue

from config import keys
from config.celery_config import capability_queue, orchestrator_queue

DEFAULT_EXCHANGE = ""
_QUEUES: dict[str, Queue] = {}
# The queues declared on each broker connection. kombu caches declarations too, but only after
# binding a copy of the queue to the channel (and, with retry, wrapping the call) on every
# publish: ~0.2 ms each. A queue is declared once per connection here; a connection kombu
# re-establishes keeps its declarations (durable queues on RabbitMQ; Redis needs none to
# publish to a queue by name).
_DECLARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _queue(name: str) -> Queue:
    queue = _QUEUES.get(name)
    if queue is None:
        if name == keys.ORCHESTRATOR_QUEUE:
            queue = orchestrator_queue()
        elif name.startswith(keys.CAPABILITY_QUEUE_PREFIX):
            queue = capability_queue(name[len(keys.CAPABILITY_QUEUE_PREFIX) :])
        else:
            raise ValueError(f"workyard publishes only to its own queues, not {name!r}")
        _QUEUES[name] = queue
    return queue


def publish_reports(app: Celery, bodies: Iterable[dict[str, Any]], *, copies: int = 1) -> None:
    """Send reports to the orchestrator queue as plain JSON messages."""
    with app.producer_or_acquire() as producer:
        for body in bodies:
            for _ in range(copies):
                publish_report(producer, body)


def _declare(producer: Any, queue: Queue) -> list[Queue]:
    """``[queue]`` the first time it is published to on the producer's connection, else ``[]``
    (not None: Celery's send_task declares the queue again when given None)."""
    declared = _DECLARED.setdefault(producer.connection, set())
    if queue.name in declared:
        return []
    declared.add(queue.name)
    return [queue]


def publish_report(producer: Any, body: dict[str, Any]) -> None:
    """One report to the orchestrator queue on an open producer."""
    queue = _queue(keys.ORCHESTRATOR_QUEUE)
    producer.publish(
        body,
        exchange=DEFAULT_EXCHANGE,
        routing_key=queue.name,
        declare=_declare(producer, queue),
        serializer="json",
        delivery_mode=2,
        retry=True,
    )


def publish_dispatch(
    app: Celery,
    producer: Any,
    queue_name: str,
    body: dict[str, Any],
    *,
    task_id: str,
    shadow: str,
    timeout_ms: int | None,
    grace_s: int,
) -> None:
    """Send one step dispatch as the Celery task ``workyard.step`` on its capability queue."""
    queue = _queue(queue_name)
    soft = hard = None
    if timeout_ms is not None:
        soft = timeout_ms / 1000
        hard = soft + max(1, grace_s)
    app.send_task(
        keys.STEP_TASK,
        args=[body],
        task_id=task_id,
        queue=queue,
        exchange=DEFAULT_EXCHANGE,
        routing_key=queue.name,
        declare=_declare(producer, queue),
        producer=producer,
        shadow=shadow,
        # Celery would saferepr() the whole dispatch for Flower; a short summary is more useful
        # there and costs nothing on the hot path.
        argsrepr=(
            f"saga={body.get('saga_id')} step={body.get('step')} {body.get('phase')} attempt={body.get('attempt')}"
        ),
        kwargsrepr="{}",
        soft_time_limit=soft,
        time_limit=hard,
        retry=True,
    )
