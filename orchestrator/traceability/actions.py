"""Recording agents' actions on work items, and their artifacts, as the audit trail records them.

Every audit row goes through ``orchestrator.work.audit`` (or, for a claim on PostgreSQL, the claim
statement, which then calls :func:`record` itself): an action is written exactly when its audit
row is, in the same transaction. A retried idempotent call writes no audit row (claims and
transitions answer a retry from what the first call did), so it makes no second action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.trace_tables import AgentActionRow, ArtifactRow
from orchestrator.traceability.ids import action_id, artifact_id

# The audit actions that are an agent's action on the item (spec §13: claim, start, complete,
# fail, and evidence attached). Others (heartbeats, releases, resumes) are not work done.
TRACED = frozenset({"claimed", "started", "completed", "failed", "evidence"})
# Those whose digest names an artifact: the audit detail that holds it, and the artifact's type.
_ARTIFACTS = {"completed": ("result_sha256", "output"), "evidence": ("sha256", "evidence")}


def agent_of(actor: str) -> str | None:
    """The agent's id if ``actor`` is an agent (``agent:<id>``), else None."""
    kind, _, ident = actor.partition(":")
    return ident if kind == "agent" and ident else None


def record(
    session: Session, item_id: str, tenant: str, action: str, actor: str, details: Mapping[str, Any] | None
) -> str | None:
    """Write the action (and its artifact) if ``actor`` is an agent and ``action`` is traced; its id."""
    agent = agent_of(actor)
    if agent is None or action not in TRACED:
        return None
    # The item's row is locked by the call that changes it (a claim's UPDATE, a transition's FOR
    # UPDATE), so nobody else numbers this item's actions meanwhile; the unique constraint on
    # (item, agent, sequence) would refuse a second writer that did. Autoflush counts the
    # actions this transaction already added.
    last = session.scalar(
        select(func.max(AgentActionRow.sequence)).where(
            AgentActionRow.item_id == item_id, AgentActionRow.agent_id == agent
        )
    )
    sequence = (last or 0) + 1
    now = utcnow()
    act = action_id(item_id, agent, sequence)
    session.add(
        AgentActionRow(id=act, tenant=tenant, item_id=item_id, agent_id=agent, sequence=sequence, kind=action, at=now)
    )
    produced = _ARTIFACTS.get(action)
    digest = (details or {}).get(produced[0]) if produced else None
    if produced is not None and isinstance(digest, str):
        ref = (details or {}).get("evidence") if action == "evidence" else None
        session.add(
            ArtifactRow(
                id=artifact_id(act, produced[1], digest),
                tenant=tenant,
                item_id=item_id,
                action_id=act,
                artifact_type=produced[1],
                sha256=digest,
                ref=ref if isinstance(ref, str) else None,
                created_at=now,
            )
        )
    return act
