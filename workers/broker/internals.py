"""Every private kombu and Celery name workyard relies on, in one place.

workyard's hot paths (see ``workers.broker.redis``, ``workers.broker.publish`` and
``workers.celery.events``) reach into kombu and Celery where their public API has no hook: to
take a batch of messages with each BRPOP, to keep one Redis client per channel, to render the
exact message kombu would push, to send task events in batches. Those names may change in any
release, so they are used here and only here, each behind a small named function or hook, and
:data:`REQUIRED_PRIVATE_NAMES` lists them so that :func:`missing_private_names` (run by
``tests/unit/test_broker_internals.py``) says which one a new kombu or Celery lacks.
pyproject.toml pins both to the minor versions this module was checked against.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

# (object path "module:Class", attribute). An attribute kombu sets in ``__init__`` counts as
# present when some ``__init__`` in the class's MRO assigns it.
REQUIRED_PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("kombu.transport.redis:Channel", "_brpop_read"),
    ("kombu.transport.redis:Channel", "_in_poll"),
    ("kombu.transport.redis:Channel", "_queue_cycle"),
    ("kombu.transport.redis:Channel", "_flush_brpop_reauth"),
    ("kombu.transport.redis:Channel", "_create_client"),
    ("kombu.transport.redis:Channel", "_q_for_pri"),
    ("kombu.transport.redis:Channel", "_expires"),
    ("kombu.transport.redis:Channel", "_disconnect_pools"),
    ("kombu.transport.virtual:Channel", "_inplace_augment_message"),
    ("kombu.transport.virtual:Channel", "_get_message_priority"),
    ("kombu.transport.virtual:Transport", "_deliver"),
    ("kombu.transport.virtual:QoS", "_delivered"),
    ("kombu.transport.virtual:QoS", "_dirty"),
    ("celery.events.dispatcher:EventDispatcher", "_prepare_event"),
    ("celery.events.dispatcher:EventDispatcher", "_publish"),
    ("celery.worker.consumer:Consumer", "_flush_events"),
    # Public by its name, but undocumented: if it were renamed, our override would silently
    # stop batching task events.
    ("celery.worker.consumer:Consumer", "on_send_event_buffered"),
)


def missing_private_names(required: Iterable[tuple[str, str]] = REQUIRED_PRIVATE_NAMES) -> list[str]:
    """The ``module:Class.attribute`` names in ``required`` that the installed kombu and Celery
    lack (a module or class that is gone counts too); empty when all are there."""
    missing = []
    for path, attribute in required:
        module_name, _, class_name = path.partition(":")
        try:
            owner: Any = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            missing.append(f"{path}.{attribute}")
            continue
        if not hasattr(owner, attribute) and attribute not in _assigned_in_init(owner):
            missing.append(f"{path}.{attribute}")
    return missing


def check_private_names(required: Iterable[tuple[str, str]] = REQUIRED_PRIVATE_NAMES) -> None:
    """Raise, naming each one, if a private kombu or Celery name workyard needs is missing."""
    missing = missing_private_names(required)
    if missing:
        raise ImportError(
            "this kombu/Celery lacks names workyard relies on (see workers/broker/internals.py): " + ", ".join(missing)
        )


def _assigned_in_init(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in getattr(cls, "__mro__", ()):
        code = getattr(klass.__dict__.get("__init__"), "__code__", None)
        if code is not None:
            names.update(code.co_names)
    return names


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel with the private methods workyard extends turned into named hooks:
    :meth:`receive_raw`, :meth:`after_brpop_delivery` and :meth:`sync_client`.
    ``workers.broker.redis`` overrides those, never kombu's names."""

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's own, but for two hooks. kombu decodes what BRPOP returned in place, and a
        # message that is not JSON raises out of the consumer's event loop (stopping a worker):
        # here the raw message goes to receive_raw, which may refuse it. And kombu has no hook
        # after a delivery: after_brpop_delivery is where a batch consumer can take more in the
        # same turn of the event loop.
        kombu: Any = self
        try:
            try:
                dest_item = kombu.client.parse_response(kombu.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # The next poll reconnects (kombu's words: a disconnect makes it).
                kombu.client.connection.disconnect()
                raise
            if not dest_item:
                raise Empty()
            dest, item = dest_item
            queue = _text(dest).rsplit(self.sep, 1)[0]
            kombu._queue_cycle.rotate(queue)
            self.receive_raw(item, queue)
            self.after_brpop_delivery()
            return True
        finally:
            kombu._in_poll = None
            # The BRPOP connection is idle now: kombu flushes a pending re-authentication here.
            kombu._flush_brpop_reauth()

    def receive_raw(self, raw: bytes, queue: str) -> None:
        """A message BRPOP took from ``queue``, as Redis stored it; decoded and delivered to the
        queue's consumer here, as kombu does."""
        loads: Any = kombu_json.loads
        deliver(self, loads(_text(raw)), queue)

    def after_brpop_delivery(self) -> None:
        """Called after a BRPOP delivered a message; does nothing here."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu builds a new redis.Redis here for every publish, acknowledgement and event
        # (``conn_or_acquire``); the asynchronous one (BRPOP, pub/sub) keeps kombu's lifecycle.
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        return self.sync_client()

    def sync_client(self) -> Any:
        """The client for a synchronous command; kombu's default builds a new one each time."""
        return self.new_sync_client()

    def new_sync_client(self) -> Any:
        """A new ``redis.Redis`` on the channel's connection pool, built as kombu builds it."""
        return super()._create_client(asynchronous=False)  # type: ignore[no-untyped-call]


def _text(value: bytes | str) -> str:
    # What kombu's bytes_to_str does with what redis-py returns.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def deliver(channel: Any, message: dict[str, Any], queue: str) -> None:
    """Hand a raw message popped from ``queue`` to the channel's consumer, as kombu does after a
    BRPOP (the consumer's callback, and QoS bookkeeping). kombu has no public way to deliver a
    message the transport fetched itself."""
    channel.connection._deliver(message, queue)


def held_delivery_tags(qos: Any) -> list[str]:
    """The delivery tags a channel's QoS holds unacknowledged (delivered, not yet acknowledged or
    given back). Called from another thread than the consumer's: kombu mutates these while we
    read, so a concurrent change makes this answer empty for the moment (the caller tries again)."""
    try:
        dirty = set(qos._dirty)
        return [tag for tag in list(qos._delivered) if tag not in dirty]
    except RuntimeError:  # changed size during iteration
        return []


def queue_key(channel: Any, queue: str, priority: int) -> str:
    """The Redis list kombu keeps ``queue``'s messages of ``priority`` in (kombu's naming, which
    the batch pop and the worker's Lua push must match)."""
    return str(channel._q_for_pri(queue, priority))


def augment_message(channel: Any, message: dict[str, Any], exchange: str, routing_key: str) -> None:
    """Encode the body and set delivery tag and delivery info, in place, as kombu's
    ``basic_publish`` does before it pushes a message; the rendered report must be identical."""
    channel._inplace_augment_message(message, exchange, routing_key)


def message_priority(channel: Any, message: dict[str, Any]) -> int:
    """The priority kombu's ``_put`` files a message under (bounded as kombu bounds it)."""
    return int(channel._get_message_priority(message, reverse=False))


def expiring_queues(channel: Any) -> Mapping[str, Any]:
    """Queues declared with an expiry on this channel: kombu refreshes their TTL on every push,
    which a single LPUSH rendered ahead of time would not do."""
    return channel._expires or {}


def disconnect_pools(channel: Any) -> None:
    """Drop the channel's connection pools, as kombu does after a fork or a connection error
    (so a test can see the channel rebuild its client on the new pool)."""
    channel._disconnect_pools()


def prepare_event(dispatcher: Any, type: str, fields: dict[str, Any]) -> Any:
    """A Celery event (clock, hostname, pid filled in) without sending it: ``send_task`` hands a
    task-sent event's fields to its dispatcher, and only the private half builds the event."""
    return dispatcher._prepare_event(type, fields)


def publish_events(
    dispatcher: Any, events: list[Any], producer: Any, routing_key: str, retry_policy: dict[str, Any]
) -> None:
    """Publish prepared events as one message (with ``task.multi``, a list Flower reads) on an
    open producer, with the dispatcher's exchange and serializer, retrying a lost connection as
    ``retry_policy`` says (kombu's default retries for ever); Celery's public ``send`` takes one
    event and buffers on its own."""
    dispatcher._publish(events, producer, routing_key, retry=True, retry_policy=retry_policy)


def flush_task_events(consumer: Any) -> None:
    """Send the task events a Celery worker consumer has buffered, now; Celery flushes only from
    its event loop's next tick."""
    consumer._flush_events()
