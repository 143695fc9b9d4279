"""Running a worker for some capabilities: ``workyard worker --capability X --handlers mod``."""

from __future__ import annotations

import os
import socket
from contextvars import Token
from typing import Any

from celery import signals

from config import heap
from config.keys import capability_queue
from config.logging import enter_log_context, leave_log_context
from config.settings import Settings
from workers.celery.app import create_app, redis_client
from workers.presence import PresenceBeacon
from workers.registry import RegistryError, handlers_for, load_handler_modules


def worker_argv(
    capabilities: list[str], *, concurrency: int, pool: str, hostname: str | None, loglevel: str
) -> list[str]:
    name = hostname or f"{'+'.join(capabilities)}@{socket.gethostname()}"
    return [
        "worker",
        "-Q",
        ",".join(capability_queue(c) for c in capabilities),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        name,
        "-E",
        "--loglevel",
        loglevel,
        "--without-mingle",
        "--without-gossip",
    ]


# The log context of each task running now, by task id (a thread pool runs several at once).
_log_contexts: dict[str, Token[dict[str, str] | None]] = {}


def _enter_log_context(task_id: str | None = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """Celery's own lines about a step's task (its success, its failure) name the saga, as the
    runtime's lines do: the context is set before the task runs and reset after Celery logged."""
    body = (args[0] if args else None) or (kwargs or {}).get("body")
    if task_id is None or not isinstance(body, dict):
        return
    _log_contexts[task_id] = enter_log_context(
        saga_id=body.get("saga_id"), tenant=body.get("tenant"), step=body.get("step")
    )


def _leave_log_context(task_id: str | None = None, **_: Any) -> None:
    token = _log_contexts.pop(task_id or "", None)
    if token is not None:
        leave_log_context(token)


def _settle_heap(**_: Any) -> None:
    heap.settle()


def run_worker(
    settings: Settings,
    capabilities: list[str],
    handler_modules: list[str],
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    hostname: str | None = None,
    loglevel: str | None = None,
) -> int:
    """Import the handlers, check each capability has one, and run the Celery worker. Returns
    the worker's exit code: 0 after an orderly stop (SIGTERM, SIGINT), non-zero when it stopped
    on an error, so that a supervisor (systemd's ``Restart=on-failure``) starts it again."""
    load_handler_modules(handler_modules)
    missing = [c for c in capabilities if not handlers_for([c])]
    if missing:
        raise RegistryError(
            f"no handler in {', '.join(handler_modules)} is registered for capability {', '.join(missing)}"
        )
    app = create_app(settings, capabilities)
    # Celery logs two lines per task at INFO; WORKYARD_LOG_LEVEL=WARNING spares that on busy workers.
    level = loglevel or os.environ.get("WORKYARD_LOG_LEVEL", "INFO")
    # Celery's worker command ends with the worker's exit code, which app.worker_main() drops
    # (click hands it back to Celery, which does not return it): read it off the worker itself.
    started: list[Any] = []
    beacons: list[PresenceBeacon] = []

    def keep(sender: Any, **_: Any) -> None:
        started.append(sender)

    def announce(sender: Any, **_: Any) -> None:
        # Once it consumes: the agent registry lists it (through the orchestrator) from now on.
        name = str(getattr(sender, "hostname", None) or hostname or socket.gethostname())
        beacons.append(PresenceBeacon(lambda: redis_client(settings), name, capabilities, concurrency).start())

    def withdraw(**_: Any) -> None:
        while beacons:
            beacons.pop().stop()

    signals.task_prerun.connect(_enter_log_context, weak=False)
    signals.task_postrun.connect(_leave_log_context, weak=False)
    signals.worker_init.connect(keep, weak=False)
    # Before the pool forks (its processes inherit the frozen heap), and in each pool process.
    signals.worker_init.connect(_settle_heap, weak=False)
    signals.worker_process_init.connect(_settle_heap, weak=False)
    signals.worker_ready.connect(announce, weak=False)
    signals.worker_shutdown.connect(withdraw, weak=False)
    try:
        app.worker_main(
            worker_argv(capabilities, concurrency=concurrency, pool=pool, hostname=hostname, loglevel=level)
        )
    finally:
        signals.task_prerun.disconnect(_enter_log_context)
        signals.task_postrun.disconnect(_leave_log_context)
        signals.worker_init.disconnect(keep)
        signals.worker_init.disconnect(_settle_heap)
        signals.worker_process_init.disconnect(_settle_heap)
        signals.worker_ready.disconnect(announce)
        signals.worker_shutdown.disconnect(withdraw)
        withdraw()
    return int(started[-1].exitcode or 0) if started else 0
