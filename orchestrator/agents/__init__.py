"""The agent registry (work-items spec §12): who can do work, how well, how busy they are,
whether they are alive, and what they spent.

- ``registry``: register (idempotent), update (optimistic), deregister.
- ``heartbeats``: an agent's heartbeat; ``touch_agent``, the cheap mark any work call leaves.
- ``workers``: Celery workers' presence records folded into agents of tenant ``*``.
- ``spend``: ``record_spend`` against the budget's current period (``periods``).
- ``listing``: the API's pages; ``candidates``: the router's view of a tenant's agents.
- ``liveness``: live, stale, dead from the last heartbeat, the same in Python and in SQL.
- ``stamps``: a tenant's fleet stamp, new with every change of its registry (the router's cue).

The registry sits below ``orchestrator.work`` (routing reads it) and imports no other room but
``storage``.
"""

from __future__ import annotations

import orchestrator.agents.stamps  # noqa: F401  (registers the flush listener that restamps a tenant's fleet)
from orchestrator.agents.candidates import candidates
from orchestrator.agents.heartbeats import touch_agent
from orchestrator.agents.liveness import Thresholds
from orchestrator.agents.spend import record_spend

__all__ = ["Thresholds", "candidates", "record_spend", "touch_agent"]
