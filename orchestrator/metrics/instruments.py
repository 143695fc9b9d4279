"""Counters and histograms of what this process did, where it happens.

They live in one registry of this module (not prometheus_client's global one), which every
``/metrics`` of the process serves. Each process counts its own: Prometheus adds the processes
up (``sum(rate(workyard_step_seconds_count[5m])) by (capability)``). A count is taken once the
transaction that did the thing has committed (``UnitOfWork.after_commit``): a batch rolled back and
tried again counts once.

Label values are bounded: a capability name comes from the templates, and at most
:data:`MAX_LABEL_VALUES` distinct ones are kept per label; any further one is counted under
``other``, so a process that runs many templates cannot grow its series without end. No label
names a tenant, a saga or an item.
"""

from __future__ import annotations

import threading
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from models.enums import Outcome, Phase
from orchestrator.storage.unit_of_work import UnitOfWork

INSTRUMENTS = CollectorRegistry(auto_describe=True)

MAX_LABEL_VALUES = 100
OTHER = "other"

# From a second's tenth to an hour: a handler, a person's work item, a step that waits for both.
STEP_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

STEP_SECONDS = Histogram(
    "workyard_step_seconds",
    "Step latency per capability: from an attempt's dispatch to the orchestrator settling it (queue wait, "
    "run and report included), for attempts that succeeded, failed, were lost or timed out (deferrals are "
    "not attempts). Handler steps only: a work-item step has no capability.",
    ["capability", "phase", "outcome"],
    buckets=STEP_BUCKETS_S,
    registry=INSTRUMENTS,
)
COMPENSATIONS = Counter(
    "workyard_compensations",
    "Compensation runs seen by this process: started (a saga began compensating), compensated (it undid "
    "every completed step) or compensation_failed (a compensation gave up: a remediation item was opened). "
    "Success rate: compensated / (compensated + compensation_failed).",
    ["outcome"],
    registry=INSTRUMENTS,
)
SLA_BREACHES = Counter(
    "workyard_sla_breaches",
    "SLA breaches fired by this process's timer loop, of sagas and of work items.",
    ["kind"],
    registry=INSTRUMENTS,
)

# From a minute to a week: people approve in minutes to days.
APPROVAL_BUCKETS_S = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86_400.0, 3 * 86_400.0, 7 * 86_400.0)
APPROVAL_SECONDS = Histogram(
    "workyard_approval_seconds",
    "Approval latency at work-item gates: from the item entering the gated status (the gate becoming "
    "pending) to the approval that gave the gate the last one it needed. gate: policy (a policy's approval "
    "steps) or hitl (a human in the loop, no policy).",
    ["gate"],
    buckets=APPROVAL_BUCKETS_S,
    registry=INSTRUMENTS,
)


class BoundedValues:
    """At most ``limit`` distinct values of one label; any further one is :data:`OTHER`."""

    def __init__(self, limit: int = MAX_LABEL_VALUES):
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


capabilities = BoundedValues()


def step_settled(
    uow: UnitOfWork, capability: str | None, phase: Phase, outcome: Outcome, dispatched_at: datetime, now: datetime
) -> None:
    """An attempt of a handler step was settled now: observed once the transaction commits."""
    if capability is None or not outcome.counts or outcome is Outcome.running:
        return
    seconds = max(0.0, (now - dispatched_at).total_seconds())
    labels = (capabilities(capability), phase.value, outcome.value)
    uow.after_commit(lambda: STEP_SECONDS.labels(*labels).observe(seconds))


def compensation(uow: UnitOfWork, outcome: str) -> None:
    """A compensation run started, or ended (compensated, compensation_failed)."""
    uow.after_commit(lambda: COMPENSATIONS.labels(outcome).inc())


def sla_breached(uow: UnitOfWork, kind: str) -> None:
    """A saga's or a work item's SLA was breached (``kind``: saga, work_item)."""
    uow.after_commit(lambda: SLA_BREACHES.labels(kind).inc())


def approval_granted(uow: UnitOfWork, gate: str, pending_since: datetime, now: datetime) -> None:
    """A gate got the last approval it needed (``gate``: policy or hitl): observed once committed."""
    seconds = max(0.0, (now - pending_since).total_seconds())
    uow.after_commit(lambda: APPROVAL_SECONDS.labels(gate).observe(seconds))
