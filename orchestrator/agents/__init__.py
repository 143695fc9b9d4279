"""The agent registry (work-items spec §12): who can do work, how well, how busy they are,
whether they are alive, and what they spent.

- ``registry``: register (idempotent), update (optimistic), deregister.
- ``heartbeats``: an agent's heartbeat; ``touch_agent``, the cheap mark any work call leaves.
- ``workers``: Celery workers' presence records folded into agents of tenant ``*``.
- ``spend``: ``record_spend`` against the budget's current period (``periods``).
- ``listing``: the API's pages; ``candidates``: the router's view of a tenant's agents.
- ``liveness``: live, stale, dead from the last heartbeat, the same in Python and in SQL.

The registry sits below ``orchestrator.work`` (routing reads it) and imports no other room but
``storage``.
"""

from __future__ import annotations

from orchestrator.agents.candidates import candidates
from orchestrator.agents.heartbeats import touch_agent
from orchestrator.agents.liveness import Thresholds
from orchestrator.agents.spend import record_spend

__all__ = ["Thresholds", "candidates", "record_spend", "touch_agent"]
