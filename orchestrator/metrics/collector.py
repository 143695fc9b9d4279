"""The metrics a scrape reads from the database and the broker, and the registry ``/metrics`` serves.

A scrape must stay cheap however many sagas and items are stored, and counting whole tables does
not (its cost grows with them). So the counts (:func:`~orchestrator.metrics.figures.read_counts`)
are read by the first scrape, then again every ``WORKYARD_METRICS_MAX_AGE_S`` (15 s) by a thread
that the first scrape starts; scrapes serve the counts last read, whose age is itself a metric
(``workyard_metrics_counts_age_seconds``). A process that is never scraped never reads them. The
lags (oldest outbox row, earliest timer) and the capability queues are read at every scrape: a
few index lookups and one Redis round trip, whatever the size of the tables.

A figure that cannot be read (the database or the broker away) is left out of the scrape and
logged; ``workyard_metrics_read_errors_total`` counts such failures, so the scrape itself still
answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from models.base import utcnow
from models.enums import SagaState
from orchestrator.metrics.figures import RECENT, Counts, Sagas, read_counts, read_lags
from orchestrator.metrics.instruments import INSTRUMENTS
from orchestrator.storage.db import SessionFactory, reading

log = logging.getLogger(__name__)

_ZERO_SAGAS = Sagas()

READ_ERRORS = Counter(
    "workyard_metrics_read_errors",
    "Failures to read figures for /metrics (database or broker away); the figures are left out of that scrape.",
    ["source"],
    registry=INSTRUMENTS,
)


class QueueFigures(Protocol):
    """One capability queue's length and its oldest message's dispatch time."""

    @property
    def capability(self) -> str: ...
    @property
    def messages(self) -> int: ...
    @property
    def oldest_dispatched_at(self) -> datetime | None: ...


# Reads the capability queues named; None where the broker cannot be read this way (RabbitMQ).
QueueReader = Callable[[Sequence[str]], Sequence[QueueFigures]]


class DatabaseCollector:
    """Yields the figures read from the database and the broker (see the module)."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        max_age_s: float,
        queues: QueueReader | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.max_age_s = max_age_s
        self.queues = queues
        self.clock = clock
        self._counts: Counts | None = None
        self._first = threading.Lock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def close(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=10)

    # -- reading -------------------------------------------------------------------------------

    def counts(self) -> Counts | None:
        """The counts last read; the first call reads them and starts the thread that keeps them
        fresh. None if they could not be read yet."""
        if self._counts is None:
            with self._first:
                if self._counts is None:
                    self._counts = self._read_counts()
                if self._refresher is None and not self._stop.is_set():
                    self._refresher = threading.Thread(target=self._refresh, name="metrics-counts", daemon=True)
                    self._refresher.start()
        return self._counts

    def _refresh(self) -> None:
        while not self._stop.wait(self.max_age_s):
            counts = self._read_counts()
            if counts is not None:
                self._counts = counts

    def _read_counts(self) -> Counts | None:
        started = time.perf_counter()
        try:
            with reading(self.sessions) as session:
                counts = read_counts(session, self.clock())
        except Exception:
            log.warning("could not read the counts for /metrics", exc_info=True)
            READ_ERRORS.labels("database").inc()
            return None
        counts.took_s = time.perf_counter() - started
        return counts

    # -- the collector ---------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        counts = self.counts()
        if counts is not None:
            yield from _count_families(counts, now)
        yield from self._lag_families(now)
        if counts is not None and self.queues is not None:
            yield from self._queue_families(counts.capabilities, now)

    def _lag_families(self, now: datetime) -> Iterator[Metric]:
        try:
            with reading(self.sessions) as session:
                lags = read_lags(session)
        except Exception:
            log.warning("could not read the outbox and timer lags for /metrics", exc_info=True)
            READ_ERRORS.labels("database").inc()
            return
        yield _gauge(
            "workyard_outbox_lag_seconds",
            "Age of the oldest outbox row not yet published and deleted (0: none). Rows are published "
            "as their transaction commits; one that stays is re-published by the outbox sweep.",
            _age(lags.oldest_outbox, now),
        )
        yield _gauge(
            "workyard_timer_lag_seconds",
            "How far past due the earliest durable timer is (retries, deadlines, SLA clocks, leases; "
            "0: none is due). A timer loop that keeps up holds it under a second or so.",
            _age(lags.earliest_timer, now),
        )

    def _queue_families(self, capabilities: Sequence[str], now: datetime) -> Iterator[Metric]:
        assert self.queues is not None
        if not capabilities:
            return
        try:
            depths = self.queues(capabilities)
        except Exception:
            log.warning("could not read the capability queues for /metrics", exc_info=True)
            READ_ERRORS.labels("broker").inc()
            return
        messages = GaugeMetricFamily(
            "workyard_queue_messages",
            "Step dispatches waiting on queue cap.<capability> (taken by a worker, not yet acknowledged: not counted); "
            "for every capability a registered template names. Redis broker only.",
            labels=["capability"],
        )
        oldest = GaugeMetricFamily(
            "workyard_queue_oldest_message_age_seconds",
            "Age of the oldest dispatch waiting on queue cap.<capability>, from when the orchestrator wrote it "
            "(0: the queue is empty). Redis broker only.",
            labels=["capability"],
        )
        for depth in depths:
            messages.add_metric([depth.capability], depth.messages)
            oldest.add_metric([depth.capability], _age(depth.oldest_dispatched_at, now) if depth.messages else 0.0)
        yield messages
        yield oldest


def _age(at: datetime | None, now: datetime) -> float:
    return max(0.0, (now - at).total_seconds()) if at is not None else 0.0


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _count_families(counts: Counts, now: datetime) -> Iterator[Metric]:
    yield _gauge(
        "workyard_metrics_counts_age_seconds",
        "How old the counts in this scrape are (sagas, work items, dead letters, webhook deliveries): they are "
        "read at most every WORKYARD_METRICS_MAX_AGE_S.",
        _age(counts.at, now),
    )
    yield _gauge("workyard_metrics_counts_read_seconds", "How long reading those counts took.", counts.took_s)

    sagas = GaugeMetricFamily("workyard_sagas", "Saga runs stored, by state.", labels=["state"])
    for state in SagaState:
        sagas.add_metric([state.value], counts.sagas.get(state.value, _ZERO_SAGAS).count)
    yield sagas
    # A cancelled saga is one whose compensation undid every completed step, too.
    undone = (SagaState.compensated, SagaState.cancelled)
    compensated = sum(counts.sagas.get(s.value, _ZERO_SAGAS).count for s in undone)
    failed = counts.sagas.get(SagaState.compensation_failed.value, _ZERO_SAGAS).count
    if compensated + failed:
        yield _gauge(
            "workyard_compensation_success_ratio",
            "Of the stored sagas whose compensation ended, the share that undid every completed step "
            "((compensated + cancelled) / (compensated + cancelled + compensation_failed)).",
            compensated / (compensated + failed),
        )

    by_type = counts.by_type()
    created = CounterMetricFamily(
        "workyard_work_items_created", "Work items created, by type (deleted ones included).", labels=["type"]
    )
    for type_, n in sorted(counts.created.items()):
        created.add_metric([type_], n)
    yield created
    items = GaugeMetricFamily(
        "workyard_work_items",
        "Work items stored (deleted ones excluded), by type and status.",
        labels=["type", "status"],
    )
    for (type_, status), figures in sorted(counts.items.items()):
        items.add_metric([type_, status], figures.count)
    yield items
    hours = RECENT.total_seconds() / 3600
    yield _means(
        "workyard_work_item_mean_time_to_start_seconds",
        f"Mean time from creation to start (in progress) of the work items started in the last {hours:g} h, by "
        "type; a type with none is left out.",
        ((t, f.started, f.start_seconds) for t, f in by_type.items()),
    )
    yield _means(
        "workyard_work_item_mean_time_to_complete_seconds",
        f"Mean time from creation to completion (a terminal status) of the work items completed in the last "
        f"{hours:g} h, by type; a type with none is left out.",
        ((t, f.completed, f.complete_seconds) for t, f in by_type.items()),
    )

    breached = GaugeMetricFamily(
        "workyard_sla_breached",
        "Sagas and work items (kind) stored whose SLA was breached at least once.",
        labels=["kind"],
    )
    breached.add_metric(["saga"], sum(s.sla_breached for s in counts.sagas.values()))
    breached.add_metric(["work_item"], sum(f.sla_breached for f in by_type.values()))
    yield breached
    with_sla = sum(f.with_sla for f in by_type.values())
    if with_sla:
        yield _gauge(
            "workyard_work_item_sla_breach_ratio",
            "Of the work items stored with an SLA, the share whose SLA was breached.",
            sum(f.sla_breached for f in by_type.values()) / with_sla,
        )

    yield _gauge(
        "workyard_dead_letters",
        "Dead letters stored: messages nobody could act on, kept with the reason.",
        counts.dead_letters,
    )
    deliveries = GaugeMetricFamily(
        "workyard_webhook_deliveries",
        "Webhook deliveries stored, by state (pending, delivered, failed).",
        labels=["state"],
    )
    for delivery_state in sorted({"pending", "delivered", "failed", *counts.deliveries}):
        deliveries.add_metric([delivery_state], counts.deliveries.get(delivery_state, 0))
    yield deliveries
    yield _gauge(
        "workyard_webhook_failures",
        "Webhook deliveries that failed for good (every attempt spent), as stored.",
        counts.deliveries.get("failed", 0),
    )


def _means(name: str, documentation: str, figures: Iterable[tuple[str, int, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["type"])
    for type_, n, total_s in sorted(figures):
        if n:
            family.add_metric([type_], total_s / n)
    return family


class _Instruments:
    """This process's counters and histograms (orchestrator.metrics.instruments), in every registry."""

    def collect(self) -> Iterable[Metric]:
        return INSTRUMENTS.collect()


class Metrics:
    """What one process's ``/metrics`` serves: its instruments, the database's and the broker's
    figures, and the process's own (CPU, memory, open files)."""

    def __init__(self, collector: DatabaseCollector):
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Instruments())
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The text exposition format (``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)

    def close(self) -> None:
        self.collector.close()
