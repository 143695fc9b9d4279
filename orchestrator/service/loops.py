"""The orchestrator process: report consumer, outbox sweep, timer loop, webhook sender, the
recovery of lost reports and of a Redis that lost its data, Celery workers' presence in the
agent registry, and the release of dispatches held by pauses no longer in force, as threads."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from orchestrator.sagas.queue_pauses import release_orphans
from orchestrator.service.consumer import ReportConsumer
from orchestrator.service.presence import WorkerPresenceFold
from orchestrator.service.webhooks import WebhookSender
from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)

# How often the outbox is swept for rows left unpublished past ``outbox_sweep_after_s``, as a
# share of that age: often enough that such a row goes out again soon after, rarely enough
# that an idle orchestrator does not query for nothing every second.
SWEEP_EVERY_SHARE = 0.5
# Deliveries are looked for once a second: a webhook is not a sub-second channel, and an idle
# look is one statement (WebhookSender.tick).
WEBHOOKS_EVERY_S = 1.0
# Lost reports are looked for among attempts running past the visibility timeout: a few seconds
# more on a recovery that is rare anyway, and one cheap query (and MGET) when there is nothing.
# Each pass also reads the Redis generation markers (a GET each) to notice a data loss.
RECOVERY_EVERY_S = 3.0
# Celery workers' presence records (they rewrite theirs every 5 s) into the agent registry.
PRESENCE_EVERY_S = 2.0


def _loop(name: str, stop: threading.Event, every_s: float, tick: Callable[[], int]) -> None:
    while not stop.is_set():
        try:
            busy = tick()
        except Exception:
            log.exception("%s failed; trying again", name)
            busy = 0
        # Keep going without a pause while there is a backlog.
        if not busy:
            stop.wait(every_s)


def serve_metrics(wiring: Wiring) -> WSGIServer | None:
    """Serve /metrics on ``WORKYARD_ORCHESTRATOR_METRICS_PORT`` (in a thread of its own), if set.
    No token: the port is bound where the operator says (loopback by default)."""
    port = wiring.settings.orchestrator_metrics_port
    if port is None:
        return None
    host = wiring.settings.orchestrator_metrics_host
    try:
        server, _thread = start_http_server(port, addr=host, registry=wiring.metrics.registry)
    except OSError as exc:
        raise SystemExit(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): set WORKYARD_ORCHESTRATOR_METRICS_PORT "
            "to a free port (one per orchestrator process on a host), or unset it"
        ) from None
    log.info("orchestrator metrics on http://%s:%d/metrics", host, port)
    return server


def run_orchestrator(wiring: Wiring, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when called on the main thread)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    settings = wiring.settings
    sender = WebhookSender(wiring.sessions, settings, resolver=wiring.resolver)
    consumer = ReportConsumer(wiring.app, wiring.coordinator, batch=settings.coordinator_batch, stop=stop)
    presence = WorkerPresenceFold(wiring.sessions, wiring.store_client)
    threads = [
        threading.Thread(target=consumer.run, name="coordinator", daemon=True),
        threading.Thread(
            target=_loop,
            args=("outbox sweep", stop, settings.outbox_sweep_after_s * SWEEP_EVERY_SHARE, wiring.dispatcher.sweep),
            name="outbox-sweep",
            daemon=True,
        ),
        threading.Thread(target=wiring.timers.run, args=(stop,), name="timers", daemon=True),
        threading.Thread(
            target=_loop, args=("webhooks", stop, WEBHOOKS_EVERY_S, sender.tick), name="webhooks", daemon=True
        ),
        threading.Thread(
            target=_loop,
            args=("recovery", stop, RECOVERY_EVERY_S, wiring.recover),
            name="report-recovery",
            daemon=True,
        ),
        threading.Thread(
            # Every pause_refresh_s: reads this process's pauses afresh, and sends what a pause
            # resumed meanwhile left held (one indexed query when nothing is held).
            target=_loop,
            args=(
                "pause release",
                stop,
                settings.pause_refresh_s,
                lambda: release_orphans(wiring.sessions, settings, wiring.dispatcher.publish),
            ),
            name="pause-release",
            daemon=True,
        ),
        threading.Thread(
            target=_loop,
            args=("worker presence", stop, PRESENCE_EVERY_S, presence.tick),
            name="worker-presence",
            daemon=True,
        ),
    ]
    metrics = serve_metrics(wiring)  # first: a port that is taken stops the process before anything runs
    for thread in threads:
        thread.start()
    log.info("orchestrator running (database %s)", wiring.engine.url.render_as_string(hide_password=True))
    stop.wait()
    wiring.timers.wake.set()  # its loop sleeps on this, not on stop
    for thread in threads:
        thread.join(timeout=10)
    if metrics is not None:
        metrics.shutdown()
        metrics.server_close()
    sender.close()
    wiring.close()
