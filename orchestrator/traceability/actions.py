"""Recording agents' actions on work items, and their artifacts, as the audit trail records them.

Every audit row goes through ``orchestrator.work.audit``, which calls :func:`record`: an action is
written exactly when its audit row is, in the same transaction. The one exception is a claim on
PostgreSQL, one statement that writes its audit row itself (``orchestrator.work.claim_statement``):
``orchestrator.work.claims`` records its action here right after it, once the row is locked (the
statement's own reads would number it from before the lock); a claim batch
(``orchestrator.work.claim_batches``) writes its claims' actions together before it commits. A
retried idempotent
call writes no audit row (claims and transitions answer a retry from what the first call did),
so it makes no second action.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.trace_tables import ACTIONS
from orchestrator.storage import driver_sql
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.traceability.ids import action_id, artifact_id

# The audit actions that are an agent's action on the item (spec §13: claim, start, complete,
# fail, and evidence attached). Others (heartbeats, releases, resumes) are not work done.
TRACED = frozenset({"claimed", "started", "completed", "failed", "evidence"})
# Those whose digest names an artifact: the audit detail that holds it, and the artifact's type.
ARTIFACT_OF = {"completed": ("result_sha256", "output"), "evidence": ("sha256", "evidence")}


def agent_of(actor: str) -> str | None:
    """The agent's id if ``actor`` is an agent (``agent:<id>``), else None."""
    kind, _, ident = actor.partition(":")
    return ident if kind == "agent" and ident else None


def record(
    session: Session,
    item_id: str,
    tenant: str,
    action: str,
    actor: str,
    details: Mapping[str, Any] | None,
    at: datetime,
) -> str | None:
    """Write the action (and its artifact) if ``actor`` is an agent and ``action`` is traced; its
    id. ``at``: when, as its audit row says."""
    agent = agent_of(actor)
    if agent is None or action not in TRACED:
        return None
    uow = uow_of(session)
    # The item's row is locked by the call that changes it (a claim's UPDATE, a transition's FOR
    # UPDATE), so nobody else numbers this item's actions meanwhile; the unique constraint on
    # (item, agent, sequence) would refuse a second writer that did. Rows are buffered in the
    # unit of work and written with the audit rows (no ORM object, no flush: a claim's hot path);
    # one this transaction buffered already is the last, else the database has it.
    buffered = [r["sequence"] for r in uow.actions if r["item_id"] == item_id and r["agent_id"] == agent]
    if buffered:
        last: int | None = max(buffered)
    else:
        last = session.execute(
            select(func.max(ACTIONS.c.sequence)).where(ACTIONS.c.item_id == item_id, ACTIONS.c.agent_id == agent)
        ).scalar()
    sequence = (last or 0) + 1
    act = action_id(item_id, agent, sequence)
    uow.actions.append(
        {
            "id": act,
            "tenant": tenant,
            "item_id": item_id,
            "agent_id": agent,
            "sequence": sequence,
            "kind": action,
            "at": at,
        }
    )
    produced = ARTIFACT_OF.get(action)
    digest = (details or {}).get(produced[0]) if produced else None
    if produced is not None and isinstance(digest, str):
        ref = (details or {}).get("evidence") if action == "evidence" else None
        uow.artifacts.append(
            {
                "id": artifact_id(act, produced[1], digest),
                "tenant": tenant,
                "item_id": item_id,
                "action_id": act,
                "artifact_type": produced[1],
                "sha256": digest,
                "ref": ref if isinstance(ref, str) else None,
                "created_at": at,
            }
        )
    return act


def record_claim(session: Session, item_id: str, tenant: str, agent: str, at: datetime) -> None:
    """An agent's claim made by the one-statement claim (PostgreSQL), recorded right after it: one
    statement past SQLAlchemy, numbered there after the agent's last action on the item (the claim
    holds the item's row, so nobody else numbers its actions meanwhile), spelled as
    :func:`ids.action_id` spells it. Through :func:`record` when this transaction has actions of
    the agent on the item not written yet."""
    uow = uow_of(session)
    if any(r["item_id"] == item_id and r["agent_id"] == agent for r in uow.actions):
        record(session, item_id, tenant, "claimed", f"agent:{agent}", None, at)
        return
    deferred = session.info.get(_DEFERRED)
    if deferred is not None:
        deferred.append((item_id, agent, tenant, at))
        return
    driver_sql.execute(session, _CLAIMED, {"item": item_id, "agent": agent, "tenant": tenant, "at": at})


# The session.info key of the claims' actions a claim batch writes together (see defer_claims).
_DEFERRED = "workyard_deferred_claim_actions"


def defer_claims(session: Session) -> None:
    """From now on in this transaction, :func:`record_claim` keeps its actions for
    :func:`write_claims`, which writes them in one statement (a claim batch of
    ``orchestrator.work.claim_batches``: one round trip for its claims' actions, not one each).
    Only for a transaction that claims each item once and records no other action of the
    claiming agents on the claimed items before ``write_claims``: their numbers are taken then."""
    session.info[_DEFERRED] = []


def write_claims(session: Session) -> None:
    """Write the actions :func:`record_claim` kept since :func:`defer_claims`, each numbered after
    its agent's last on its item (the claims hold the items' rows, so nobody numbers them meanwhile)."""
    deferred: list[tuple[str, str, str, datetime]] = session.info.pop(_DEFERRED, None) or []
    if deferred:
        items, agents, tenants, ats = (list(column) for column in zip(*deferred, strict=True))
        driver_sql.execute(session, _CLAIMS, {"items": items, "agents": agents, "tenants": tenants, "ats": ats})


# {sequence:03d}: at least three digits, more once past 999 (``ids.action_id``).
_CLAIMED = driver_sql.DriverStatement(
    "INSERT INTO agent_actions (id, tenant, item_id, agent_id, sequence, kind, at) "
    "SELECT 'ACT-' || $1::varchar || '-' || $2::varchar || '-' "
    "|| lpad(n::text, greatest(3, length(n::text)), '0'), $3::varchar, $1::varchar, $2::varchar, n, 'claimed', "
    "$4::timestamptz "
    "FROM (SELECT coalesce(max(a.sequence), 0) + 1 AS n FROM agent_actions a "
    "WHERE a.item_id = $1::varchar AND a.agent_id = $2::varchar) AS next",
    ("item", "agent", "tenant", "at"),
)
# The same for many claims at once (distinct items), from arrays.
_CLAIMS = driver_sql.DriverStatement(
    "INSERT INTO agent_actions (id, tenant, item_id, agent_id, sequence, kind, at) "
    "SELECT 'ACT-' || c.item || '-' || c.agent || '-' || lpad(next.n::text, greatest(3, length(next.n::text)), '0'), "
    "c.tenant, c.item, c.agent, next.n, 'claimed', c.at "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::timestamptz[]) AS c(item, agent, tenant, at) "
    "CROSS JOIN LATERAL (SELECT coalesce(max(a.sequence), 0) + 1 AS n FROM agent_actions a "
    "WHERE a.item_id = c.item AND a.agent_id = c.agent) AS next",
    ("items", "agents", "tenants", "ats"),
)
