"""Celery configuration built from :class:`Settings`.

Results never go through a Celery result backend: a worker reports a step's outcome as a message
to the orchestrator queue, which is cheaper and keeps the saga's state in one place.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from config import keys
from config.settings import Settings
from workers.broker import redis as redis_transport

redis_transport.install()

STEP_EXCHANGE = Exchange(keys.STEP_EXCHANGE, type="direct", durable=True)
ORCHESTRATOR_EXCHANGE = Exchange(keys.ORCHESTRATOR_QUEUE, type="direct", durable=True)


def capability_queue(capability: str) -> Queue:
    name = keys.capability_queue(capability)
    return Queue(name, STEP_EXCHANGE, routing_key=name, durable=True)


def orchestrator_queue() -> Queue:
    return Queue(
        keys.ORCHESTRATOR_QUEUE,
        ORCHESTRATOR_EXCHANGE,
        routing_key=keys.ORCHESTRATOR_QUEUE,
        durable=True,
    )


def celery_config(settings: Settings, capabilities: list[str] | None = None) -> dict[str, Any]:
    """The Celery settings every workyard process uses."""
    transport_options: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout_s}
    broker = settings.effective_broker_url()
    if broker.startswith(("redis", "rediss")):
        transport_options.update(
            # Live processes renew what they hold (workers.broker.redis), so what a dead one held
            # is older than the timeout within seconds: look for it every second, in every
            # process, and do not let a sweeper that died mid-sweep block the others for long.
            unacked_restore_interval=1,
            unacked_restore_throttle=1,
            unacked_mutex_expire=5,
        )
    if broker.startswith(("amqp", "pyamqp")):
        # Publisher confirms: an outbox row is deleted only once RabbitMQ has the message.
        transport_options["confirm_publish"] = True
    extra: dict[str, Any] = {}
    if settings.broker_connection_max_retries is not None:
        extra["broker_connection_max_retries"] = settings.broker_connection_max_retries
    queues = [orchestrator_queue()] + [capability_queue(c) for c in capabilities or []]
    return {
        "broker_url": broker,
        "broker_transport_options": transport_options,
        "result_backend": None,
        "result_backend_transport_options": transport_options,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "task_queues": queues,
        "task_default_queue": keys.ORCHESTRATOR_QUEUE,
        "task_create_missing_queues": False,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # A step running when the broker connection drops finishes and stores its outcome (the
        # store waits out a Redis restart); its message, which can no longer be acknowledged,
        # comes back later and replays the stored outcome. Cancelling it instead would throw
        # away work that may already have had its effect, and run it again.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Sends task events in batches rather than one broker message each (see the module).
        "worker_consumer": "workers.celery.events:Consumer",
        **extra,
    }
