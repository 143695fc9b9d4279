"""What the gates out of an item's current status still lack, for a person to read before trying."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.policies import GateRead, GateStatus
from models.principal import Principal, Scope
from orchestrator.work.access import require
from orchestrator.work.gates.evaluate import entered_at, gate_of, missing
from orchestrator.work.views import load_item


def gate_status(session: Session, principal: Principal, item_id: str) -> GateRead:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    gate = gate_of(session, item)
    targets = gate.lifecycle.transitions.get(item.status, ()) if gate is not None else ()
    gated = [to for to in targets if gate is not None and gate.gated(item.status, to)]
    lacks = missing(session, gate) if gate is not None and gated else []
    return GateRead(
        status=item.status,
        policy_id=gate.policy_id if gate is not None else None,
        policy_version=gate.row.version if gate is not None and gate.row is not None else None,
        hitl=gate.hitl if gate is not None else False,
        pending_since=entered_at(session, item) if gated else None,
        gates=[GateStatus(to=to, open=not lacks, missing=lacks) for to in gated],
    )
