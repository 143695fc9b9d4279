"""Whether a capability has a live consumer, as the API's agent registry tells it.

Every Celery worker announces itself in Redis every few seconds (``workers.presence``), and the
orchestrator folds those announcements into the agent registry (agents of tenant ``*``
registered by ``system:celery``, with the capabilities whose ``cap.*`` queues they consume). A
capability none of whose workers is *live* there (heard from within WORKYARD_AGENT_STALE_AFTER_S,
90 s by default) has nobody to run its steps: they wait in the queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.cli.remote import Api

WORKER_REGISTRANT = "system:celery"


def idle_capabilities(api: Api, capabilities: list[str]) -> dict[str, str]:
    """For each capability no live worker consumes, why, as a sentence; {} when the token may
    not read the registry (agents:read), as the warning is advice, not the command's answer."""
    idle: dict[str, str] = {}
    for capability in capabilities:
        found = api.get_or_none(
            "/api/v1/agents", capability=capability, tenant="*", limit=500, statuses=(401, 403, 422)
        )
        if found is None:
            return {}
        workers = [a for a in found["agents"] if a.get("registered_by") == WORKER_REGISTRANT]
        if any(a.get("liveness") == "live" for a in workers):
            continue
        idle[capability] = _why(capability, workers)
    return idle


def _why(capability: str, workers: list[dict[str, Any]]) -> str:
    heard = [a for a in workers if a.get("last_heartbeat_at")]
    if not heard:
        return f"no worker consumes cap.{capability}: none has announced itself (start one with `workyard worker`)"
    last = max(heard, key=lambda a: str(a["last_heartbeat_at"]))
    at = datetime.fromisoformat(str(last["last_heartbeat_at"]).replace("Z", "+00:00"))
    ago = (datetime.now(UTC) - at).total_seconds()
    return f"no live worker consumes cap.{capability}: the last, {last['id']}, was heard from {ago:.0f} s ago"
