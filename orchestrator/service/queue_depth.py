"""How many dispatches wait on each ``cap.<capability>`` queue of a Redis broker, and since when.

kombu's Redis transport keeps a queue as a list: publishers LPUSH, consumers BRPOP, so the
oldest message waiting is the list's last element. Its age is read off the dispatch it carries
(``dispatched_at``, written by the orchestrator when it wrote the outbox row: the age includes any
wait in the outbox). Messages a worker has taken but not yet acknowledged are not in the list:
they are not counted. workyard publishes no priorities, so a queue is one list.

A RabbitMQ broker is not read here (its queues' lengths need the management API or a passive
declare per queue): the metrics that need it are left out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from config import keys


@dataclass(frozen=True)
class QueueDepth:
    """One capability queue: messages waiting, and when the oldest of them was dispatched (None:
    empty, or its dispatch time unreadable)."""

    capability: str
    messages: int
    oldest_dispatched_at: datetime | None


def queue_lengths(client: redis.Redis, capabilities: Iterable[str]) -> dict[str, int]:
    """Messages waiting on each capability's queue, in one round trip."""
    names = sorted(set(capabilities))
    pipe = client.pipeline(transaction=False)
    for capability in names:
        pipe.llen(keys.capability_queue(capability))
    return {capability: int(n) for capability, n in zip(names, pipe.execute(), strict=True)}


def queue_depths(client: redis.Redis, capabilities: Iterable[str]) -> list[QueueDepth]:
    """Each capability queue's length and its oldest message's dispatch time, in one round trip."""
    names = sorted(set(capabilities))
    pipe = client.pipeline(transaction=False)
    for capability in names:
        queue = keys.capability_queue(capability)
        pipe.llen(queue)
        pipe.lindex(queue, -1)
    replies = pipe.execute()
    return [
        QueueDepth(capability, int(replies[2 * n]), dispatched_at(replies[2 * n + 1]))
        for n, capability in enumerate(names)
    ]


def dispatched_at(raw: bytes | str | None) -> datetime | None:
    """The ``dispatched_at`` of the step dispatch a queued kombu message carries (a Celery task
    message whose one argument is the dispatch); None if it carries none that reads."""
    if raw is None:
        return None
    try:
        envelope: Any = json.loads(raw)
        body: Any = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        value = datetime.fromisoformat(str(args[0]["dispatched_at"]))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
