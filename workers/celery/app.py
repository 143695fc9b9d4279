"""The Celery app every workyard process builds, and the one task workers run.

Each template step is dispatched as ``workyard.step`` on ``cap.<capability>``; the message
carries the handler's name, and Flower shows that name (``shadow``) instead of the generic task.
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from config.keys import STEP_TASK
from config.settings import Settings
from workers.broker.reports import report_queue
from workers.celery.config import celery_config
from workers.celery.outcome import AttemptFailed, finish
from workers.hooks import HookChain
from workers.runtime import RuntimeConfig, StepRuntime
from workers.store import StepStore

log = logging.getLogger(__name__)


def redis_client(settings: Settings) -> redis.Redis:
    # redis-py 8 defaults socket_timeout to 5 s; our calls are short, so say so on purpose.
    return redis.Redis.from_url(
        settings.effective_redis_url(), socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )


def broker_redis_client(settings: Settings) -> redis.Redis | None:
    """The broker's Redis as a plain client (for the orchestrator's marker of its data, see
    ``orchestrator.service.redis_loss``); None where the broker is not a Redis reached by
    ``redis://``, ``rediss://`` or ``redis+socket://`` (RabbitMQ keeps durable queues)."""
    url = settings.effective_broker_url()
    parts = urlsplit(url)
    options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
    if parts.scheme in ("redis", "rediss"):
        return redis.Redis.from_url(url, **options)
    if parts.scheme in ("redis+socket", "socket"):
        # kombu's form: the socket's path, the database as ?virtual_host=N.
        db = parse_qs(parts.query).get("virtual_host", ["0"])[0] or "0"
        return redis.Redis(unix_socket_path=parts.path, db=int(db), password=parts.password, **options)
    return None


def create_app(settings: Settings, capabilities: list[str] | None = None, *, hooks: HookChain | None = None) -> Celery:
    """A Celery app wired to ``settings``; with capabilities, it can also run steps."""
    app = Celery("workyard", set_as_current=False)
    app.conf.update(celery_config(settings, capabilities))
    state: dict[str, StepRuntime] = {}
    copies = 2 if settings.fault_duplicate_delivery else 1
    # Only a template connection here: nothing connects before a pool process sends a report.
    reports = report_queue(app.connection_for_write())

    def runtime(hostname: str) -> StepRuntime:
        # Built lazily in each pool process: a Redis connection must not cross a fork.
        if "rt" not in state:
            client = redis_client(settings)
            store = StepStore(client, claim_ttl_ms=settings.run_claim_ttl_ms, dedup_ttl_s=settings.dedup_ttl_s)
            state["rt"] = StepRuntime(
                store,
                RuntimeConfig(
                    lease_ttl_ms=settings.lease_ttl_ms,
                    lease_wait_ms=settings.lease_wait_ms,
                    worker=hostname,
                    report_copies=copies,
                    timeout_errors=(SoftTimeLimitExceeded,),
                ),
                hooks,
                render_report=reports.renderer(client),
            )
        return state["rt"]

    # acks_on_failure_or_timeout: an attempt that ends as FAILURE (workers.celery.outcome) has
    # been reported, so its message is acknowledged as a success's is (Celery's default, set here
    # because workyard depends on it).
    @app.task(
        name=STEP_TASK,
        bind=True,
        ignore_result=True,
        acks_late=True,
        acks_on_failure_or_timeout=True,
        throws=(AttemptFailed,),
    )
    def run_step(self: Task, body: Any = None) -> Any:
        hostname = self.request.hostname or socket.gethostname()
        try:
            delivery = runtime(hostname).deliver(body, source=f"{self.request.delivery_info.get('routing_key')}")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The store stayed away longer than a restart takes (see workers.store). A task that
            # raises is acknowledged, and its dispatch would be gone: give it back instead.
            raise Reject(exc, requeue=True) from exc
        if delivery.messages:
            with app.producer_or_acquire() as producer:
                reports.send(producer, [m.model_dump(mode="json") for m in delivery.messages], copies=copies)
        # Reported: now end the task as the attempt ended, for Flower (SUCCESS, FAILURE, RETRY).
        return finish(delivery)

    return app
