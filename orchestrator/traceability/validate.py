"""The spec's traceability validation (§13.1) for one tenant, or one item, in workyard's terms.

Each check is one set-based SQL statement (and one count of it) over the tenant's rows: no
Python loop over items, so it keeps working at a million items. The statements differ between
PostgreSQL and SQLite only where JSON and regular expressions are read (``_Dialect``).

What each check means here:

goalToWorkItemLinkage
    An active goal of the tenant that no live (not deleted) work item names in ``relatedGoals``.
    For one item: the codes it names that are not an active goal of its tenant's registry.
workItemToActionLinkage
    A work item whose audit trail holds more claims, starts, completions, failures and evidence
    attachments by one agent than that agent has actions on it: the action is missing.
    Items only people worked on need no actions and are never listed, nor is work audited before
    the database began recording actions (``trace_epoch``, written by the migration).
actionToArtifactLinkage
    A completion or evidence action with no artifact (claims, starts and failures produce none).
deterministicIds
    duplicateIds: an id held by more than one work item, action or artifact row (the primary
    keys keep each table's own unique; this catches the same id across them). invalidFormats: a
    work item id not shaped ``WI-{TENANT}-{TYPE}-{yyyymmdd}-{HASH}``, an action id that is not
    what its item, agent and sequence build, an artifact id not what its action, type and
    digest build. (On SQLite the work item shape is a GLOB: looser inside the two names.)
compensationTraceability
    An item compensation run whose outcome is missing: ended (completed or failed) without an
    end time or without its outcome in the item's audit trail, failed without a remediation
    item, or still running though its saga has finished.
approvalTraceability
    A gate passage (audited ``gate_passed``) that needed an approval — the item had a human in the
    loop, or the policy version it passed under has approval steps — and names none.

overallStatus is ``broken`` when any check but the first fails (a record that should exist is
missing, or an id is wrong: something to repair), ``incomplete`` when only goals lack work (a
gap in planning, nothing recorded is wrong), ``complete`` otherwise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import TERMINAL_SAGA_STATES
from models.principal import Principal, Scope
from models.trace_tables import TRACE_BREAKS
from models.traceability import (
    MAX_LISTED,
    ActionLinkage,
    ApprovalCheck,
    Checks,
    CompensationCheck,
    GoalLinkage,
    IdCheck,
    TraceabilityValidation,
    WorkItemLinkage,
)
from orchestrator.errors import InvalidInput
from orchestrator.traceability import breaks
from orchestrator.traceability.actions import TRACED
from orchestrator.work.access import require
from orchestrator.work.views import load_item

_TRACED = ", ".join(f"'{action}'" for action in sorted(TRACED))
_TERMINAL = ", ".join(f"'{state.value}'" for state in sorted(TERMINAL_SAGA_STATES))
_HEX = "[0-9A-F]"
Status = Literal["complete", "incomplete", "broken"]


@dataclass(frozen=True)
class _Dialect:
    """The SQL fragments PostgreSQL and SQLite spell differently."""

    # FROM-clause rows ``g(value)`` of work item ``w``'s related goals.
    goals_of_w: str
    # A JSON field of an audit row ``e``'s details, as text; {0}: the field's name.
    detail: str
    hitl: str  # the gate passage ``e`` had a human in the loop
    no_approvals: str  # the gate passage ``e`` names no approval
    policy_has_steps: str  # the policy version ``p`` has approval steps
    policy_version: str  # ``p`` is the version of the gate passage ``e``
    sequence: str  # an action ``a``'s sequence, at least three digits
    bad_item_id: str  # ``w.id`` is not shaped as a work item id


_POSTGRES = _Dialect(
    goals_of_w="CROSS JOIN LATERAL json_array_elements_text("
    "CASE WHEN json_typeof(w.related_goals) = 'array' THEN w.related_goals ELSE '[]'::json END) AS g(value)",
    detail="(e.details ->> '{0}')",
    hitl="(e.details ->> 'hitl') = 'true'",
    # CASE, not OR/AND: PostgreSQL may evaluate either side first, and a length of a non-array raises.
    no_approvals="CASE WHEN json_typeof(e.details -> 'approvals') = 'array' "
    "THEN json_array_length(e.details -> 'approvals') = 0 ELSE true END",
    policy_has_steps="CASE WHEN json_typeof(p.body -> 'approvalSteps') = 'array' "
    "THEN json_array_length(p.body -> 'approvalSteps') > 0 ELSE false END",
    policy_version="p.version = (e.details ->> 'policy_version')::int",
    sequence="lpad(a.sequence::text, greatest(3, length(a.sequence::text)), '0')",
    bad_item_id="w.id !~ '^WI-[A-Z0-9]+-[A-Z0-9]+-[0-9]{8}-[0-9A-F]{10}$'",
)
_SQLITE = _Dialect(
    goals_of_w="CROSS JOIN json_each(CASE WHEN json_type(w.related_goals) = 'array' THEN w.related_goals "
    "ELSE '[]' END) AS g",
    detail="json_extract(e.details, '$.{0}')",
    hitl="json_extract(e.details, '$.hitl') = 1",
    no_approvals="coalesce(json_array_length(e.details, '$.approvals'), 0) = 0",
    policy_has_steps="coalesce(json_array_length(p.body, '$.approvalSteps'), 0) > 0",
    policy_version="p.version = json_extract(e.details, '$.policy_version')",
    sequence="printf('%03d', a.sequence)",
    bad_item_id="w.id NOT GLOB 'WI-*-*-" + "[0-9]" * 8 + "-" + _HEX * 10 + "'",
)


def _dialect(session: Session) -> _Dialect:
    return _POSTGRES if session.get_bind().dialect.name == "postgresql" else _SQLITE


def _only(one: bool, alias: str, column: str = "item_id") -> str:
    """Appended to a statement's WHERE: with one item, that item's rows of table ``alias`` only."""
    return f"AND {alias}.{column} = :item" if one else ""


def _listed(session: Session, sql: str, params: dict[str, Any], check: str | None = None) -> tuple[list[str], int]:
    """The first MAX_LISTED ids ``sql`` (one column, ``id``) finds, in order, and how many in all.

    With ``params["unrecorded"]`` (the nightly run), ids already on file as breaks of ``check`` are
    left out of the list (not of the count): each night lists up to MAX_LISTED breaks not recorded
    yet, so a tenant with more has the rest recorded on the following nights."""
    skip = check is not None and bool(params.get("unrecorded"))
    unrecorded = (
        "WHERE NOT EXISTS (SELECT 1 FROM trace_breaks b WHERE b.tenant = :tenant AND b.check_name = :check "
        "AND b.subject = x.id) "
        if skip
        else ""
    )
    ids = list(
        session.scalars(
            text(f"SELECT x.id FROM ({sql}) AS x {unrecorded}ORDER BY x.id LIMIT :cap"),
            {**params, "cap": MAX_LISTED, "check": check},
        )
    )
    if len(ids) < MAX_LISTED and not skip:
        return ids, len(ids)
    return ids, int(session.scalar(text(f"SELECT count(*) FROM ({sql}) AS x"), params) or 0)


def _goals(session: Session, d: _Dialect, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    if one:
        # The codes the item names that are no active goal of its tenant.
        sql = (
            f"SELECT DISTINCT g.value AS id FROM work_items w {d.goals_of_w} WHERE w.id = :item "
            "AND g.value NOT IN (SELECT code FROM goals WHERE tenant = :tenant AND status = 'active')"
        )
    else:
        sql = (
            "SELECT code AS id FROM goals WHERE tenant = :tenant AND status = 'active' AND code NOT IN ("
            f"SELECT g.value FROM work_items w {d.goals_of_w} WHERE w.tenant = :tenant AND w.deleted_at IS NULL)"
        )
    return _listed(session, sql, params)


def _items_without_actions(session: Session, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    # Per item and agent: another agent's actions do not stand for this one's.
    sql = (
        "SELECT DISTINCT x.item_id AS id FROM (SELECT e.item_id FROM work_item_events e "
        f"WHERE e.tenant = :tenant {_only(one, 'e')} AND e.actor LIKE 'agent:%' AND e.action IN ({_TRACED}) "
        # Work audited before this database began recording actions has none: not judged.
        "AND e.at >= coalesce((SELECT t.started_at FROM trace_epoch t WHERE t.id = 1), e.at) "
        "GROUP BY e.item_id, e.actor "
        "HAVING count(*) > (SELECT count(*) FROM agent_actions a "
        "WHERE a.item_id = e.item_id AND 'agent:' || a.agent_id = e.actor)) AS x"
    )
    return _listed(session, sql, params, "workItemToActionLinkage")


def _actions_without_artifacts(session: Session, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    sql = (
        f"SELECT a.id AS id FROM agent_actions a WHERE a.tenant = :tenant {_only(one, 'a')} "
        "AND a.kind IN ('completed', 'evidence') "
        "AND NOT EXISTS (SELECT 1 FROM artifacts r WHERE r.action_id = a.id)"
    )
    return _listed(session, sql, params, "actionToArtifactLinkage")


def _duplicates(session: Session, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    sql = (
        "SELECT u.id AS id FROM ("
        f"SELECT w.id FROM work_items w WHERE w.tenant = :tenant {_only(one, 'w', 'id')} "
        f"UNION ALL SELECT a.id FROM agent_actions a WHERE a.tenant = :tenant {_only(one, 'a')} "
        f"UNION ALL SELECT r.id FROM artifacts r WHERE r.tenant = :tenant {_only(one, 'r')}"
        ") AS u GROUP BY u.id HAVING count(*) > 1"
    )
    return _listed(session, sql, params, "deterministicIds")


def _invalid(session: Session, d: _Dialect, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    sql = (
        f"SELECT w.id AS id FROM work_items w WHERE w.tenant = :tenant "
        f"{_only(one, 'w', 'id')} AND {d.bad_item_id} "
        f"UNION ALL SELECT a.id FROM agent_actions a WHERE a.tenant = :tenant {_only(one, 'a')} "
        f"AND a.id <> 'ACT-' || a.item_id || '-' || a.agent_id || '-' || {d.sequence} "
        f"UNION ALL SELECT r.id FROM artifacts r WHERE r.tenant = :tenant {_only(one, 'r')} "
        "AND r.id <> 'ART-' || r.action_id || '-' || r.artifact_type || '-' || upper(substr(r.sha256, 1, 6))"
    )
    return _listed(session, sql, params, "deterministicIds")


def _compensations(session: Session, d: _Dialect, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    compensation = d.detail.format("compensation")
    sql = (
        "SELECT c.id AS id FROM work_item_compensations c LEFT JOIN saga_runs s ON s.id = c.saga_id "
        f"WHERE c.tenant = :tenant {_only(one, 'c')} AND ("
        "(c.status IN ('completed', 'failed') AND (c.ended_at IS NULL OR NOT EXISTS ("
        "SELECT 1 FROM work_item_events e WHERE e.item_id = c.item_id "
        "AND e.action IN ('rolled_back', 'compensated', 'compensation_failed') "
        f"AND {compensation} = c.id)))"
        " OR (c.status = 'failed' AND c.remediation_id IS NULL)"
        f" OR (c.status = 'running' AND (s.id IS NULL OR s.state IN ({_TERMINAL}))))"
    )
    return _listed(session, sql, params, "compensationTraceability")


def _approvals(session: Session, d: _Dialect, one: bool, params: dict[str, Any]) -> tuple[list[str], int]:
    policy, owner = d.detail.format("policy"), d.detail.format("policy_tenant")
    # The policy the gate passed under: the one its passage names (``policy_tenant``); a passage
    # recorded before that was written names none, and then it is the gate's own resolution: the
    # tenant's policy of that id if it has one, else the operators' shared one.
    whose = (
        f"(p.tenant = {owner} OR ({owner} IS NULL AND (p.tenant = e.tenant OR (p.tenant = '*' AND NOT EXISTS "
        "(SELECT 1 FROM policies o WHERE o.tenant = e.tenant AND o.id = p.id)))))"
    )
    sql = (
        "SELECT DISTINCT e.item_id AS id FROM work_item_events e "
        f"WHERE e.tenant = :tenant {_only(one, 'e')} AND e.action = 'gate_passed' AND ({d.no_approvals}) "
        f"AND ({d.hitl} OR EXISTS (SELECT 1 FROM policies p WHERE p.tenant IN (e.tenant, '*') AND {whose} "
        f"AND p.id = {policy} AND {d.policy_version} AND {d.policy_has_steps}))"
    )
    return _listed(session, sql, params, "approvalTraceability")


def validate(
    session: Session, principal: Principal, item_id: str | None, *, unrecorded: bool = False
) -> TraceabilityValidation:
    """Run the six checks over the principal's tenant (or, with ``item_id``, that item's chain).
    ``unrecorded``: list only what is not on file as a break already (the nightly run's lists,
    each count still of all)."""
    require(principal, Scope.work_read)
    if item_id is not None:
        tenant = load_item(session, principal, item_id).tenant
    elif principal.all_tenants:
        raise InvalidInput(
            "this token works across tenants; validate one item (itemId) or use a tenant's token",
            details=[{"path": "itemId", "message": "required for an all-tenants token"}],
        )
    else:
        tenant = principal.tenant
    d = _dialect(session)
    params: dict[str, Any] = {"tenant": tenant, "item": item_id, "unrecorded": unrecorded}
    one = item_id is not None
    goals, goal_count = _goals(session, d, one, params)
    items, item_count = _items_without_actions(session, one, params)
    actions, action_count = _actions_without_artifacts(session, one, params)
    duplicates, duplicate_count = _duplicates(session, one, params)
    invalid, invalid_count = _invalid(session, d, one, params)
    compensations, compensation_count = _compensations(session, d, one, params)
    approvals, approval_count = _approvals(session, d, one, params)
    checks = Checks(
        goal_to_work_item_linkage=GoalLinkage(
            passed=not goal_count, orphaned_goals=goals, orphaned_goals_count=goal_count
        ),
        work_item_to_action_linkage=WorkItemLinkage(
            passed=not item_count, orphaned_work_items=items, orphaned_work_items_count=item_count
        ),
        action_to_artifact_linkage=ActionLinkage(
            passed=not action_count, orphaned_actions=actions, orphaned_actions_count=action_count
        ),
        deterministic_ids=IdCheck(
            passed=not (duplicate_count or invalid_count),
            duplicate_ids=duplicates,
            duplicate_ids_count=duplicate_count,
            invalid_formats=invalid,
            invalid_formats_count=invalid_count,
        ),
        compensation_traceability=CompensationCheck(
            passed=not compensation_count,
            incomplete_compensations=compensations,
            incomplete_compensations_count=compensation_count,
        ),
        approval_traceability=ApprovalCheck(
            passed=not approval_count, missing_approvals=approvals, missing_approvals_count=approval_count
        ),
    )
    if one:
        recorded = list(breaks.of_item(session, str(item_id)))[::-1][:MAX_LISTED]
        recorded_count = int(session.scalar(select(func.count()).where(TRACE_BREAKS.c.item_id == item_id)) or 0)
    else:
        rows, recorded_count = breaks.of_tenant(session, tenant, MAX_LISTED)
        recorded = list(rows)
    return TraceabilityValidation(
        validation_id=f"VAL-{uuid.uuid4().hex}",
        timestamp=utcnow(),
        tenant=tenant,
        work_item_id=item_id,
        checks=checks,
        overall_status=_status(checks),
        recommended_actions=_recommended(checks),
        recorded_breaks=[breaks.view(row) for row in recorded],
        recorded_breaks_count=recorded_count,
    )


def _status(checks: Checks) -> Status:
    broken = (
        checks.work_item_to_action_linkage,
        checks.action_to_artifact_linkage,
        checks.deterministic_ids,
        checks.compensation_traceability,
        checks.approval_traceability,
    )
    if not all(check.passed for check in broken):
        return "broken"
    return "complete" if checks.goal_to_work_item_linkage.passed else "incomplete"


def _recommended(checks: Checks) -> list[str]:
    advice: list[str] = []
    if not checks.goal_to_work_item_linkage.passed:
        advice.append(
            "Plan work for each orphaned goal (name it in an item's relatedGoals), retire it, or register "
            "the codes items name"
        )
    if not checks.work_item_to_action_linkage.passed:
        advice.append("Review the orphaned work items' audit trails: agent work was done with no action recorded")
    if not checks.action_to_artifact_linkage.passed:
        advice.append("Review the orphaned actions: a completion or evidence was recorded without its artifact")
    if not checks.deterministic_ids.passed:
        advice.append("Investigate the duplicate and malformed ids: they were not written by workyard's id rules")
    if not checks.compensation_traceability.passed:
        advice.append("Settle the incomplete compensation runs: record each outcome, open remediation for failures")
    if not checks.approval_traceability.passed:
        advice.append("Review the items that passed a gate without approval: approve after the fact or reopen them")
    return advice
