"""Every Redis key workyard writes, in one place.

Keys are built from stable identifiers only (idempotence key, mutex scope), so a worker on any
host computes the same key for the same step.
"""

from __future__ import annotations

PREFIX = "wy:"

ORCHESTRATOR_QUEUE = "workyard.orchestrator"
STEP_EXCHANGE = "workyard.steps"
CAPABILITY_QUEUE_PREFIX = "cap."
STEP_TASK = "workyard.step"


def capability_queue(capability: str) -> str:
    return f"{CAPABILITY_QUEUE_PREFIX}{capability}"


def step_result(idempotence_key: str) -> str:
    """A step's stored success result, shared by every attempt with this key."""
    return f"{PREFIX}result:{idempotence_key}"


def attempt_report(idempotence_key: str, saga_id: str, attempt: int) -> str:
    """The final report of one attempt, replayed if its dispatch is delivered again.

    Per saga: an idempotence key may be shared by several sagas (``order:{input.order_id}``),
    their attempts are not.
    """
    return f"{PREFIX}report:{saga_id}:{idempotence_key}:{attempt}"


def attempt_seen(idempotence_key: str, saga_id: str, attempt: int) -> str:
    """Set when an attempt's dispatch first reaches a worker; a second delivery finds it."""
    return f"{PREFIX}seen:{saga_id}:{idempotence_key}:{attempt}"


def run_claim(idempotence_key: str) -> str:
    """Held (and renewed) while a handler runs for this key; keeps duplicates from running."""
    return f"{PREFIX}run:{idempotence_key}"


def mutex_lease(scope: str) -> str:
    return f"{PREFIX}lease:{scope}"


def fence(scope: str) -> str:
    """The highest fencing token granted a lease on this scope."""
    return f"{PREFIX}fence:{scope}"


# The orchestrator's marker of the data a Redis holds (a generation id it also keeps in the
# database): a Redis found without it lost its data. Never expires; in the store's Redis, and in
# the broker's where that is another one.
GENERATION = f"{PREFIX}generation"


# Patterns an operator (or a test) may scan to inspect or drop lease state.
LEASE_PATTERNS = (f"{PREFIX}lease:*", f"{PREFIX}fence:*")


# A Celery worker's presence, for the agent registry: the worker writes its record (name,
# capabilities, concurrency) under its own key with a TTL and adds its name to the index; the
# orchestrator reads the index, folds the records it finds into the agents table, and drops the
# names whose key expired. A set rather than a SCAN: the keyspace holds a week of step results.
WORKER_PRESENCE_INDEX = f"{PREFIX}workers"


def worker_presence(name: str) -> str:
    return f"{PREFIX}worker:{name}"
