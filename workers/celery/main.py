"""Running a worker for some capabilities: ``workyard worker --capability X --handlers mod``."""

from __future__ import annotations

import os
import socket

from config.keys import capability_queue
from config.settings import Settings
from workers.celery.app import create_app
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


def run_worker(
    settings: Settings,
    capabilities: list[str],
    handler_modules: list[str],
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    hostname: str | None = None,
    loglevel: str | None = None,
) -> None:
    """Import the handlers, check each capability has one, and run the Celery worker."""
    load_handler_modules(handler_modules)
    missing = [c for c in capabilities if not handlers_for([c])]
    if missing:
        raise RegistryError(
            f"no handler in {', '.join(handler_modules)} is registered for capability {', '.join(missing)}"
        )
    app = create_app(settings, capabilities)
    # Celery logs two lines per task at INFO; WORKYARD_LOG_LEVEL=WARNING spares that on busy workers.
    level = loglevel or os.environ.get("WORKYARD_LOG_LEVEL", "INFO")
    app.worker_main(worker_argv(capabilities, concurrency=concurrency, pool=pool, hostname=hostname, loglevel=level))
