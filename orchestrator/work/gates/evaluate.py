"""Whether an item may pass a gated transition, and what it lacks if not.

A gate guards the transitions out of one status. What counts for it is what was recorded while
the item sat in that status this time (since it last entered it): a send-back and a return to
review start a new round, with no approvals carried over. Evidence and validator runs are about
the item and count in every round.

The rules, for a gated transition of an item that names a policy or has a hitl requirement:

- the policy must be registered (for the item's tenant, or an operator's);
- no rejection in the round (a rejection blocks the gate until the item leaves the status);
- each approval step approved in the round by someone holding its role (different people,
  checked when approving);
- each required check has evidence naming it, or, if it has a sync validator, a passing run;
  a check with ``maxRiskLevel`` below the item's risk level needs evidence naming it too;
- with hitl required, at least one approval in the round is a person's (a user's).

Which transitions are gated: the policy's ``gates``; by default every transition into a status
where the work counts as done, and planned->in_progress where the lifecycle has it. An item with
hitl and no policy: the transitions into a done status only.

Async validators never hold the transition: it dispatches the ones not yet run and flags the
item for audit (``validations.run_async``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from models.gate_tables import ApprovalRow, EvidenceRow, PolicyRow, ValidationRow
from models.lifecycles import LIFECYCLES, Lifecycle
from models.policies import MissingItem, PolicySpec
from models.principal import ALL_TENANTS
from models.work_item_types import RISK_ORDER, WorkItemType, effective_risk
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.errors import Conflict
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work.gates.policies import live_for, policy_id_of
from orchestrator.work.types import types_of

# The lifecycle start a policy gates by default, where the lifecycle has it (the spec's example).
DEFAULT_START = ("planned", "in_progress")


class GateUnmet(Conflict):
    """A gated transition lacks approvals, evidence or passing validations; ``details`` lists each."""

    code = "gate_unmet"


@dataclass(frozen=True)
class Gate:
    """What gates an item: its policy (if it names one: id, and the live version if registered), its hitl."""

    item: WorkItem
    lifecycle: Lifecycle
    policy_id: str | None
    row: PolicyRow | None
    spec: PolicySpec | None
    hitl: bool

    def gated(self, source: str, target: str) -> bool:
        if self.policy_id is None:
            # A human in the loop without a policy: a person signs the work off, not its start.
            names = completion_gates(self.lifecycle)
        elif self.spec is not None and self.spec.gates is not None:
            names = set(self.spec.gates)
        else:
            names = default_gates(self.lifecycle)
        return f"{source}->{target}" in names or f"*->{target}" in names


def completion_gates(lifecycle: Lifecycle) -> set[str]:
    """Every transition into a status where the work counts as done."""
    return {f"*->{status}" for status in lifecycle.succeeded}


def default_gates(lifecycle: Lifecycle) -> set[str]:
    """A policy's gates unless it names its own: the completion gates, and planned->in_progress."""
    names = completion_gates(lifecycle)
    source, target = DEFAULT_START
    if target in lifecycle.transitions.get(source, ()):
        names.add(f"{source}->{target}")
    return names


def policy_of(session: Session, item: WorkItem) -> str | None:
    """The policy gating an item: the one it names, else its type's (an item may name only that)."""
    return _policy(item, types_of(session, [item.type]).get(item.type))


def _policy(item: WorkItem, item_type: WorkItemType | None) -> str | None:
    return policy_id_of(item) or (item_type.approval_policy_id if item_type is not None else None)


def live_policy(session: Session, item: WorkItem, policy_id: str) -> tuple[PolicyRow, PolicySpec] | None:
    """The live version of ``policy_id`` as it gates ``item`` (see :func:`_live`)."""
    return _live(session, item, types_of(session, [item.type]).get(item.type), policy_id)


def _live(
    session: Session, item: WorkItem, item_type: WorkItemType | None, policy_id: str
) -> tuple[PolicyRow, PolicySpec] | None:
    """A type's policy is the operators' (a type is every tenant's, and a tenant's own policy of
    the same id may not loosen the gate the operators put on it); else the item's tenant's own,
    falling back to the operators'."""
    if item_type is not None and item_type.approval_policy_id == policy_id:
        return live_for(session, ALL_TENANTS, policy_id)
    return live_for(session, item.tenant, policy_id)


def gate_of(session: Session, item: WorkItem) -> Gate | None:
    """The item's gate, or None when nothing gates it (no policy named by it or its type, no hitl
    required by its routing rule or its type)."""
    item_type = types_of(session, [item.type]).get(item.type)
    policy_id = _policy(item, item_type)
    hitl = bool(item.hitl and item.hitl.get("required")) or bool(
        item_type is not None and item_type.hitl is not None and item_type.hitl.required
    )
    if policy_id is None and not hitl:
        return None
    found = _live(session, item, item_type, policy_id) if policy_id is not None else None
    return Gate(
        item=item,
        lifecycle=LIFECYCLES[item.lifecycle],
        policy_id=policy_id,
        row=found[0] if found else None,
        spec=found[1] if found else None,
        hitl=hitl,
    )


def entered_at(session: Session, item: WorkItem) -> datetime:
    """Where the gate's round began: when the item last entered its current status, or was last
    edited (PATCH) since, whichever is later. An approval is of the item as it was then: after its
    title, payload or plan changed, it needs approving again."""
    uow = uow_of(session)
    if uow.pending:
        uow.write(session)
    at = session.scalar(
        select(func.max(WorkItemEvent.at)).where(
            WorkItemEvent.item_id == item.id,
            or_(WorkItemEvent.to_status == item.status, WorkItemEvent.action == "updated"),
        )
    )
    return at if at is not None else item.created_at


def round_approvals(session: Session, item: WorkItem, since: datetime) -> list[ApprovalRow]:
    """The decisions made since ``since`` while the item was in its current status, oldest first."""
    rows = session.scalars(
        select(ApprovalRow).where(ApprovalRow.item_id == item.id).order_by(ApprovalRow.created_at, ApprovalRow.id)
    ).all()
    # Compared here, not in SQL: SQLite keeps timestamps as text.
    return [r for r in rows if r.status == item.status and r.created_at >= since]


def missing(session: Session, gate: Gate, *, mover: str | None = None) -> list[MissingItem]:
    """Everything the gate out of the item's current status still lacks, in a stable order. With
    ``mover`` (who asks to pass it), approvals by the mover, the item's holder or its assignee do
    not count (four eyes: who approved may not also carry the work through its gate)."""
    item = gate.item
    lacks: list[MissingItem] = []
    if gate.policy_id is not None and gate.spec is None:
        lacks.append(
            MissingItem(
                path="payload.approvalPolicyId",
                kind="policy",
                policy=gate.policy_id,
                message=f"policy {gate.policy_id!r} is not registered (POST /api/v1/policies)",
            )
        )
    approvals = round_approvals(session, item, entered_at(session, item))
    for r in approvals:
        if r.decision == "reject":
            lacks.append(
                MissingItem(
                    path=f"approvals.{r.id}",
                    kind="rejected",
                    policy=r.policy_id,
                    step=r.step,
                    role=r.role,
                    message=f"rejected by {r.approver}: {r.justification}",
                )
            )
    approved = [r for r in approvals if r.decision == "approve"]
    if mover is not None:
        doers = {mover, _ref(item.claimed_by_type, item.claimed_by_id), _ref(item.assignee_type, item.assignee_id)}
        approved = [r for r in approved if r.approver not in doers]
    spec = gate.spec
    if spec is not None:
        for n, step in enumerate(spec.approval_steps):
            if not any(r.step == n for r in approved):
                lacks.append(
                    MissingItem(
                        path=f"approvalSteps.{n}",
                        kind="approval",
                        policy=spec.id,
                        step=n,
                        role=step.role,
                        message=f"needs an approval by someone in role {step.role!r}",
                    )
                )
        lacks.extend(_checks(session, gate, spec))
    if gate.hitl and not any(r.approver_type == "user" for r in approved):
        lacks.append(
            MissingItem(
                path="hitl",
                kind="human_approval",
                message="the item has a human in the loop: a person (a user token) must approve",
            )
        )
    return lacks


def _checks(session: Session, gate: Gate, spec: PolicySpec) -> list[MissingItem]:
    item = gate.item
    evidence = session.scalars(select(EvidenceRow.checks).where(EvidenceRow.item_id == item.id)).all()
    evidenced = {name for names in evidence for name in names}
    runs = latest_runs(session, item.id)
    item_type = types_of(session, [item.type]).get(item.type)
    risk = effective_risk(item_type, item.risk_level)
    lacks: list[MissingItem] = []
    for check in spec.checks:
        name = check.name
        path = f"checks.{name}"
        validator = check.validator
        if validator is not None and validator.mode == "sync" and check.required:
            run = runs.get(name)
            if run is None or run.state != "passed":
                state = "not_requested" if run is None else run.state
                why = {
                    "not_requested": "request its validator: POST /api/v1/work-items/{id}/validations",
                    "pending": "its validator has not answered yet",
                    "failed": f"its validator failed: {run.error if run is not None else ''}",
                }[state]
                lacks.append(
                    MissingItem(
                        path=path, kind="validation", policy=spec.id, check=name, state=state, message=f"{name}: {why}"
                    )
                )
        elif check.required and (validator is None or validator.mode == "sync") and name not in evidenced:
            lacks.append(
                MissingItem(
                    path=path,
                    kind="evidence",
                    policy=spec.id,
                    check=name,
                    message=f"{name}: needs evidence naming the check (POST /api/v1/work-items/{{id}}/evidence)",
                )
            )
        limit = check.max_risk()
        if limit is not None and RISK_ORDER.index(risk) > RISK_ORDER.index(limit) and name not in evidenced:
            lacks.append(
                MissingItem(
                    path=path,
                    kind="risk",
                    policy=spec.id,
                    check=name,
                    message=f"{name}: the item's risk level {risk.value} is above {limit.value}: needs evidence "
                    "naming the check (a risk acceptance)",
                )
            )
    return lacks


def latest_runs(session: Session, item_id: str) -> dict[str, ValidationRow]:
    """The latest validator run of each check of the item."""
    rows = session.scalars(
        select(ValidationRow).where(ValidationRow.item_id == item_id).order_by(ValidationRow.requested_at)
    ).all()
    return {r.check_name: r for r in rows}


def _ref(kind: str | None, ident: str | None) -> str | None:
    return f"{kind}:{ident}" if kind and ident else None


def refuse(item: WorkItem, target: str, lacks: list[MissingItem]) -> GateUnmet:
    summary = "; ".join(m.message for m in lacks)
    return GateUnmet(
        f"cannot move {item.id} from {item.status} to {target}: the gate lacks {len(lacks)} thing(s): {summary}",
        details=[m.model_dump(mode="json") for m in lacks],
    )
