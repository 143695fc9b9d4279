"""An item's trace: the goals it serves, agents' actions on it and their artifacts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.principal import Principal, Scope
from models.trace_tables import AgentActionRow, ArtifactRow, GoalRow
from models.traceability import ActionRead, ArtifactRead, TraceRead
from orchestrator.traceability import breaks
from orchestrator.traceability.goals import view
from orchestrator.work.access import require
from orchestrator.work.views import load_item


def trace(session: Session, principal: Principal, item_id: str) -> TraceRead:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    codes = list(item.related_goals or [])
    registered = {
        row.code: row
        for row in session.scalars(select(GoalRow).where(GoalRow.tenant == item.tenant, GoalRow.code.in_(codes)))
    }
    actions = session.scalars(
        select(AgentActionRow).where(AgentActionRow.item_id == item.id).order_by(AgentActionRow.at, AgentActionRow.id)
    )
    artifacts = session.scalars(
        select(ArtifactRow).where(ArtifactRow.item_id == item.id).order_by(ArtifactRow.created_at, ArtifactRow.id)
    )
    return TraceRead(
        work_item_id=item.id,
        goals=[view(registered[code]) for code in codes if code in registered],
        unregistered_goals=[code for code in codes if code not in registered],
        actions=[
            ActionRead(action_id=a.id, agent_id=a.agent_id, sequence=a.sequence, kind=a.kind, at=a.at) for a in actions
        ],
        artifacts=[
            ArtifactRead(
                artifact_id=a.id,
                action_id=a.action_id,
                artifact_type=a.artifact_type,
                sha256=a.sha256,
                ref=a.ref,
                created_at=a.created_at,
            )
            for a in artifacts
        ],
        broken_links=[breaks.view(row) for row in breaks.of_item(session, item.id)],
    )
