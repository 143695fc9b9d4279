"""The API's documents of traceability (the work-items spec §13): goals, an item's trace, and the
``TraceabilityValidation`` document, spelled as the spec spells it (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.item_plans import GoalCode

GoalStatus = Literal["active", "retired"]
# The most ids a check lists; its count field says how many there are in all.
MAX_LISTED = 100


class GoalCreate(BaseModel):
    """A goal to register in the tenant's registry."""

    model_config = ConfigDict(extra="forbid")

    code: GoalCode = Field(description="The goal's code, as items name it in relatedGoals: e.g. GOAL-FINSERV-001.")
    title: str = Field(min_length=1, max_length=500, description="What the goal is, in a line.")
    description: str = Field(default="", max_length=10_000, description="More about the goal (may be empty).")
    status: GoalStatus = Field(
        default="active", description="active: work is expected to serve it; retired: no longer."
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The tenant it belongs to: only an all-tenant token names one (null: the token's tenant).",
    )


class GoalUpdate(BaseModel):
    """A change to a registered goal: its words, or retiring it (its code never changes)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500, description="What the goal is, in a line.")
    description: str | None = Field(default=None, max_length=10_000, description="More about the goal.")
    status: GoalStatus | None = Field(
        default=None, description="active: work is expected to serve it; retired: no longer (validation skips it)."
    )


class GoalRead(BaseModel):
    """A registered goal."""

    code: str = Field(description="The goal's code.")
    tenant: str = Field(description="The tenant it belongs to.")
    title: str = Field(description="What the goal is.")
    description: str = Field(description="More about the goal (may be empty).")
    status: GoalStatus = Field(description="active or retired.")
    created_by: str = Field(description="Who registered it (user:<id> or agent:<id>).")
    created_at: datetime = Field(description="When it was registered.")


class ActionRead(BaseModel):
    """One action an agent took on a work item."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    action_id: str = Field(alias="actionId", description="ACT-{workItemId}-{agentId}-{sequence}.")
    agent_id: str = Field(alias="agentId", description="The agent that took it.")
    sequence: int = Field(description="Its place among this agent's actions on the item, from 1.")
    kind: str = Field(description="What it was: claimed, started, completed, failed or evidence.")
    at: datetime = Field(description="When it was taken.")


class ArtifactRead(BaseModel):
    """What an agent's action produced."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    artifact_id: str = Field(alias="artifactId", description="ART-{actionId}-{artifactType}-{hash}.")
    action_id: str = Field(alias="actionId", description="The action that produced it.")
    artifact_type: str = Field(
        alias="artifactType", description="evidence (attached) or output (a completion's result)."
    )
    sha256: str = Field(description="The SHA-256 of its content (the evidence's body, the result's JSON).")
    ref: str | None = Field(description="The evidence's id, for evidence; null for an output.")
    created_at: datetime = Field(alias="createdAt", description="When it was recorded.")


class BrokenLinkRead(BaseModel):
    """A broken link of a traceability chain, as the real-time check or the nightly validation
    recorded it (once per link)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    check: str = Field(
        description="The validation check it fails: goalToWorkItemLinkage, workItemToActionLinkage, "
        "actionToArtifactLinkage, deterministicIds, compensationTraceability or approvalTraceability."
    )
    subject: str = Field(description="What is broken, as that check lists it: a goal code, an item, action or run id.")
    work_item_id: str | None = Field(alias="workItemId", description="The work item it concerns (null: none known).")
    detail: str = Field(description="What is wrong, in a sentence.")
    found_by: Literal["realtime", "nightly"] = Field(
        alias="foundBy", description="realtime: as the item was created, moved or completed; nightly: the schedule."
    )
    found_at: datetime = Field(alias="foundAt", description="When it was first found.")
    remediation_id: str | None = Field(
        alias="remediationId", description="The remediation item opened for it (null: none, the item being gone)."
    )


class TraceRead(BaseModel):
    """A work item's trace: the goals it serves, the actions agents took on it, what they produced."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    work_item_id: str = Field(alias="workItemId", description="The work item.")
    goals: list[GoalRead] = Field(description="The registered goals its relatedGoals name, in that order.")
    unregistered_goals: list[str] = Field(
        alias="unregisteredGoals", description="Codes its relatedGoals name that the tenant's registry lacks."
    )
    actions: list[ActionRead] = Field(description="Agents' actions on it, oldest first.")
    artifacts: list[ArtifactRead] = Field(description="What those actions produced, oldest first.")
    broken_links: list[BrokenLinkRead] = Field(
        alias="brokenLinks", description="Broken links of its chain found so far, oldest first (each recorded once)."
    )


class _Check(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    passed: bool = Field(description="True when the check found nothing wrong.")


class GoalLinkage(_Check):
    """Goal → work item: goals that no work serves."""

    orphaned_goals: list[str] = Field(
        alias="orphanedGoals",
        description="Active goals no live work item names in relatedGoals (with itemId: codes the item names that "
        "are not an active registered goal). At most 100.",
    )
    orphaned_goals_count: int = Field(alias="orphanedGoalsCount", description="How many in all.")


class WorkItemLinkage(_Check):
    """Work item → agent action: agent work with no action recorded."""

    orphaned_work_items: list[str] = Field(
        alias="orphanedWorkItems",
        description="Work items whose audit trail shows more agent claims, starts, completions, failures and "
        "evidence than they have actions. At most 100.",
    )
    orphaned_work_items_count: int = Field(alias="orphanedWorkItemsCount", description="How many in all.")


class ActionLinkage(_Check):
    """Agent action → artifact: completions and evidence with no artifact."""

    orphaned_actions: list[str] = Field(
        alias="orphanedActions",
        description="Completions and evidence attachments with no artifact (claims, starts and failures "
        "produce none and are never listed). At most 100.",
    )
    orphaned_actions_count: int = Field(alias="orphanedActionsCount", description="How many in all.")


class IdCheck(_Check):
    """Deterministic ids."""

    duplicate_ids: list[str] = Field(
        alias="duplicateIds",
        description="Action ids given to more than one (item, agent, sequence), or artifact ids given twice. "
        "At most 100.",
    )
    duplicate_ids_count: int = Field(alias="duplicateIdsCount", description="How many in all.")
    invalid_formats: list[str] = Field(
        alias="invalidFormats",
        description="Work item, action and artifact ids that are not what §13.2 builds from their parts. At most 100.",
    )
    invalid_formats_count: int = Field(alias="invalidFormatsCount", description="How many in all.")


class CompensationCheck(_Check):
    """Compensation traceability."""

    incomplete_compensations: list[str] = Field(
        alias="incompleteCompensations",
        description="Item compensation runs (run ids) whose outcome is missing: ended without an end time, still "
        "running though their saga has finished, or failed without a remediation item. At most 100.",
    )
    incomplete_compensations_count: int = Field(alias="incompleteCompensationsCount", description="How many in all.")


class ApprovalCheck(_Check):
    """Approval traceability."""

    missing_approvals: list[str] = Field(
        alias="missingApprovals",
        description="Work items that passed a gate needing a person (human in the loop) with no approval recorded "
        "for it. At most 100.",
    )
    missing_approvals_count: int = Field(alias="missingApprovalsCount", description="How many in all.")


class Checks(BaseModel):
    """The six checks of the spec (§13.1), by its names."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    goal_to_work_item_linkage: GoalLinkage = Field(alias="goalToWorkItemLinkage", description="Goal → work item.")
    work_item_to_action_linkage: WorkItemLinkage = Field(
        alias="workItemToActionLinkage", description="Work item → agent action."
    )
    action_to_artifact_linkage: ActionLinkage = Field(
        alias="actionToArtifactLinkage", description="Agent action → artifact."
    )
    deterministic_ids: IdCheck = Field(alias="deterministicIds", description="Ids are unique and well formed.")
    compensation_traceability: CompensationCheck = Field(
        alias="compensationTraceability", description="Every compensation run has its outcome."
    )
    approval_traceability: ApprovalCheck = Field(
        alias="approvalTraceability", description="Every gate that needed a person rested on an approval."
    )


class TraceabilityValidation(BaseModel):
    """The spec's TraceabilityValidation document, for the caller's tenant (or one item)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    validation_id: str = Field(alias="validationId", description="This run's id (VAL-<uuid>); not stored.")
    timestamp: datetime = Field(description="When it ran.")
    tenant: str = Field(description="The tenant validated.")
    work_item_id: str | None = Field(alias="workItemId", description="The one item validated; null: the whole tenant.")
    checks: Checks = Field(description="The six checks.")
    overall_status: Literal["complete", "incomplete", "broken"] = Field(
        alias="overallStatus",
        description="complete: every check passed; incomplete: only goals lack work (a gap in planning, "
        "no record is wrong); broken: a recorded link is missing or an id is wrong.",
    )
    recommended_actions: list[str] = Field(alias="recommendedActions", description="What to do about each failure.")
    recorded_breaks: list[BrokenLinkRead] = Field(
        alias="recordedBreaks",
        description="Broken links the real-time check and the nightly validation recorded (each once), newest "
        "first: the tenant's, or the one item's. At most 100. They do not change overallStatus, which "
        "says what the checks find now.",
    )
    recorded_breaks_count: int = Field(alias="recordedBreaksCount", description="How many in all.")
