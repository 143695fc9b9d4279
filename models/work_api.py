"""Request and response bodies of the work-item API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.agents import RiskLevel
from models.hitl import Hitl
from models.item_plans import CompensationPlan, GoalCode, Raci, RiskAssessment, TemplateApplied, TimeoutMs
from models.lifecycles import TypeLifecycle
from models.policies import PolicyId
from models.principal import SCOPE_PATTERN, PrincipalType
from models.sla import SlaSpec, StallSpec
from models.spellings import accept_spellings

Label = Annotated[str, Field(min_length=1, max_length=100)]
CapabilityName = Annotated[str, Field(min_length=1, max_length=200)]
ItemId = Annotated[str, Field(min_length=1, max_length=96)]

# Every event a webhook may subscribe to (``*``: all of them). A Literal, so the OpenAPI lists them.
WebhookEvent = Literal[
    "sla.warning",
    "sla.breached",
    "work_item.escalated",
    "work_item.stalled",
    "saga.completed",
    "saga.compensated",
    "saga.compensation_failed",
    "saga.cancelled",
    "saga.terminated",
    "saga.sla_warning",
    "saga.sla_breached",
    "saga.escalated",
    "traceability.broken",
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)
# What a webhook may subscribe to: one event, or "*" for all (one Literal: one error, listing all).
Subscription = Literal[WebhookEvent, "*"]

# A ``user:<id>`` or ``agent:<id>`` reference, as filters and step assignees name a party. ``[\s\S]``
# rather than ``.``: an id may hold any character (ECMA's ``.`` stops at a line break).
PARTY_PATTERN = r"^(user|agent):[\s\S]+$"
# The "type" tag of an offer has a default for callers that build one in code, but a request must
# send it: the union is told apart by it. Said in the schema, which would otherwise call it optional.
_TYPE_REQUIRED: dict[str, Any] = {"required": ["type"]}


class PartyRef(BaseModel):
    """A user or an agent, as the next-work doc names them: ``{type, id}``."""

    model_config = ConfigDict(extra="forbid")

    type: PrincipalType = Field(description="user (a person) or agent.")
    id: str = Field(min_length=1, max_length=255, description="The user's or agent's id, as its tokens name it.")


class HumanOffer(BaseModel):
    """Offered to people holding ``scope`` (and, if given, in ``group``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_TYPE_REQUIRED)

    type: Literal["human"] = Field(default="human", description="Tells the offer kinds apart: human.")
    scope: str = Field(
        default="work:claim",
        min_length=1,
        max_length=200,
        # Only in the schema: the validator says what is wrong in words.
        json_schema_extra={"pattern": SCOPE_PATTERN},
        description="The token scope a person needs to claim it: one of workyard's, or a custom one such as "
        "finance:approve (tokens can carry custom scopes in namespaces of their own).",
    )
    # Checked where an offer comes in (an item's create or update, a template's registration), not
    # here: items and templates stored before the rule must still read back.

    group: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only people in this group may claim it; null: anyone with the scope.",
    )


class AgentOffer(BaseModel):
    """Offered to agents; with ``capability``, only to agents that declare it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_TYPE_REQUIRED)

    type: Literal["agent"] = Field(default="agent", description="Tells the offer kinds apart: agent.")
    capability: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only agents that declare this capability may claim it; null: any agent.",
    )


Offer = Annotated[HumanOffer | AgentOffer, Field(discriminator="type")]


def _no_status(data: Any) -> Any:
    if isinstance(data, dict) and "status" in data:
        raise ValueError("status cannot be set here; use POST /api/v1/work-items/{id}/transition")
    return data


RACI = "Who is responsible, accountable, consulted and informed (user:<id> or agent:<id> each); null: none."
GOALS = "Codes of the goals the work serves (also accepted as relatedGoals), e.g. GOAL-FINSERV-001; each once."
RISK = "The change's risk assessment (also accepted as riskAssessment); null: none."
TEMPLATES = "The work-item templates, by id and version, it was made from (also accepted as templatesApplied)."
TIMEOUT = (
    "Once started, it must end within this many ms, or it fails with the reason timeout (also accepted as "
    "timeoutMs); null: no limit."
)
OVERALL = (
    "From its creation, it must end within this many ms, or it fails with the reason overall_timeout (also "
    "accepted as overallTimeoutMs); null: no limit."
)
COMPENSATION = (
    "How its external effects are undone (§6): POST .../compensate runs the plan as a saga. Each action_id "
    "must be a compensation handler (a step's compensate) a saga template of the tenant registers (422 "
    "otherwise). Null: no plan."
)
# The spec's spelling of a field, accepted for ours (models.spellings).
SPEC_SPELLINGS = {
    "relatedGoals": "related_goals",
    "riskAssessment": "risk_assessment",
    "templatesApplied": "templates_applied",
    "timeoutMs": "timeout_ms",
    "overallTimeoutMs": "overall_timeout_ms",
    "dueAt": "due_at",
}


def _goals_unique(value: list[str]) -> list[str]:
    if len(value) != len(set(value)):
        raise ValueError("a goal is listed twice")
    return value


class WorkItemCreate(BaseModel):
    """A request to create a work item: its type, title, tenant, offer, assignee, payload, SLA and idempotence key.

    The item (title, description, payload, metadata) must satisfy its type's JSON Schema; its
    status is its lifecycle's first one (set it later with the transition operation)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=64,
        description=(
            "A work-item type: a built-in one (task, subtask, epic, ...) or one an operator registered "
            "(GET /api/v1/work-item-types lists them); an unknown one is a 422."
        ),
    )
    title: str = Field(min_length=1, max_length=500, description="A short line saying what is to be done.")
    description: str | None = Field(default=None, max_length=20_000, description="Longer text; null: none.")
    code: str | None = Field(
        default=None, min_length=1, max_length=96, description="A business code of your own; default: the item's id."
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "The tenant the item belongs to. Default: the token's; another is a 403 unless the token is all-tenant."
        ),
    )
    priority: int = Field(
        default=50, ge=0, le=100, description="0 (lowest) to 100 (highest); queues serve higher first."
    )
    reporter: PartyRef | None = Field(default=None, description="Who asked for the work. Default: the caller.")
    assignee: PartyRef | None = Field(default=None, description="Who is to do it; null: nobody yet (it is offered).")
    labels: list[Label] = Field(
        default_factory=list, max_length=50, description="Free labels (1-100 characters each) to filter by."
    )
    dependencies: list[ItemId] = Field(
        default_factory=list,
        max_length=200,
        description="Ids of items of the same tenant that must be resolved before this one counts as ready.",
    )
    parent_id: ItemId | None = Field(
        default=None, description="The id of the item this one is part of (e.g. a subtask's task); null: none."
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="What the worker needs to do the work, shaped by the type's JSON Schema."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Anything else to keep with the item; workyard does not read it."
    )
    due_at: AwareDatetime | None = Field(
        default=None,
        description="When it must be done by (with a time zone; also accepted as dueAt): an item still open then "
        "fails with the reason due (a durable timer). Null: no date.",
    )
    origin: Literal["backlog", "chat"] | None = Field(
        default=None,
        description="Picks the task-workflow doc's lifecycle for this origin; null: the type's own lifecycle.",
    )
    offer: Offer | None = Field(
        default=None, description="Who may claim it. Default: people with the work:claim scope."
    )
    sla: SlaSpec | None = Field(default=None, description="A target time, warning and breach actions; null: none.")
    stall: StallSpec | None = Field(
        default=None,
        description="What to do when an agent holding it beats without progress; null: the server's default "
        "(notify after WORKYARD_WORK_STALL_AFTER_S).",
    )
    risk_level: RiskLevel | None = Field(
        default=None,
        description=(
            "How much harm the item can do: it may raise its type's risk level, never lower it (a lower one is "
            "a 422); the risk sets the least autonomy an agent needs to be given it. Null: the type's."
        ),
    )
    idempotence_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "A retry with the same key and body returns the first item (200); the same key with another "
            "body is a 409. Or send an Idempotency-Key header (both: they must agree)."
        ),
    )
    raci: Raci | None = Field(default=None, description=RACI)
    related_goals: list[GoalCode] = Field(default_factory=list, max_length=50, description=GOALS)
    risk_assessment: RiskAssessment | None = Field(default=None, description=RISK)
    templates_applied: list[TemplateApplied] = Field(default_factory=list, max_length=20, description=TEMPLATES)
    timeout_ms: TimeoutMs | None = Field(default=None, description=TIMEOUT)
    overall_timeout_ms: TimeoutMs | None = Field(default=None, description=OVERALL)
    compensation: CompensationPlan | None = Field(default=None, description=COMPENSATION)

    _reject_status = model_validator(mode="before")(_no_status)
    _spellings = model_validator(mode="before")(accept_spellings(SPEC_SPELLINGS))

    @field_validator("related_goals")
    @classmethod
    def _goals_once(cls, value: list[str]) -> list[str]:
        return _goals_unique(value)


def no_null(schema: dict[str, Any]) -> None:
    """The OpenAPI of a field or header that refuses null (None only means "left out"): its
    non-null branch alone, and no null default."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if branches:
        schema.update(branches[0])
    schema.pop("default", None)


# Fields of an update that cannot be null, and what to send to empty them instead.
_NOT_NULL = {
    "title": "",
    "related_goals": " ([] empties it)",
    "templates_applied": " ([] empties it)",
    "priority": "",
    "labels": " ([] empties it)",
    "dependencies": " ([] empties it)",
    "payload": " ({} empties it)",
}


class WorkItemUpdate(BaseModel):
    """Fields to change; leave out what stays. ``version`` (or an If-Match header) makes the
    update conditional on nobody having changed the item since it was read.

    A field given as null clears it where the field's description says what null means; title,
    priority, labels, dependencies and payload cannot be null (send [] or {} to empty a list or
    the payload)."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None,
        ge=1,
        description="Apply only if the item is still at this version (409 otherwise); null: unconditionally.",
    )
    # Fields that refuse null are ``X | None`` in Python (None: left out) with no null in the OpenAPI.
    title: str | None = Field(
        default=None, min_length=1, max_length=500, json_schema_extra=no_null, description="A new title."
    )
    description: str | None = Field(default=None, max_length=20_000, description="New text; null clears it.")
    priority: int | None = Field(
        default=None,
        ge=0,
        le=100,
        json_schema_extra=no_null,
        description="A new priority, 0 (lowest) to 100 (highest).",
    )
    reporter: PartyRef | None = Field(default=None, description="A new reporter; null clears it.")
    assignee: PartyRef | None = Field(
        default=None, description="A new assignee (recorded in the history); null unassigns the item."
    )
    labels: list[Label] | None = Field(
        default=None,
        max_length=50,
        json_schema_extra=no_null,
        description="The labels, replacing the old ones ([] removes them all).",
    )
    dependencies: list[ItemId] | None = Field(
        default=None,
        max_length=200,
        json_schema_extra=no_null,
        description="The dependencies, replacing the old ones ([] removes them all).",
    )
    parent_id: ItemId | None = Field(default=None, description="A new parent item's id; null detaches the item.")
    payload: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=no_null,
        description="The payload, replacing the old one whole; must satisfy the type's JSON Schema.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="The metadata, replacing the old one whole; null empties it (as {})."
    )
    due_at: AwareDatetime | None = Field(
        default=None, description="A new due time (with a time zone; re-armed); null clears it."
    )
    offer: Offer | None = Field(
        default=None, description="A new offer; null restores the default (people with the work:claim scope)."
    )
    raci: Raci | None = Field(default=None, description="A new RACI matrix; null clears it.")
    related_goals: list[GoalCode] | None = Field(
        default=None, max_length=50, json_schema_extra=no_null, description="The goal codes, replacing the old ones."
    )
    risk_assessment: RiskAssessment | None = Field(default=None, description="A new risk assessment; null clears it.")
    templates_applied: list[TemplateApplied] | None = Field(
        default=None, max_length=20, json_schema_extra=no_null, description="The templates applied, replacing them."
    )
    timeout_ms: TimeoutMs | None = Field(
        default=None, description="A new timeout from its start (re-armed if it has started); null clears it."
    )
    overall_timeout_ms: TimeoutMs | None = Field(
        default=None, description="A new timeout from its creation (re-armed); null clears it."
    )
    compensation: CompensationPlan | None = Field(default=None, description="A new compensation plan; null clears it.")

    _reject_status = model_validator(mode="before")(_no_status)
    _spellings = model_validator(mode="before")(accept_spellings(SPEC_SPELLINGS))

    @field_validator("related_goals")
    @classmethod
    def _goals_once(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _goals_unique(value)

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        # These cannot be cleared: a null would be stored as-is and break the item.
        if value is None:
            raise ValueError(f"cannot be null; leave {info.field_name} out to keep it{_NOT_NULL[str(info.field_name)]}")
        return value


class ClaimRead(BaseModel):
    """The claim on a work item: who holds it, since when, and its lease (epoch and expiry)."""

    type: PrincipalType = Field(description="Whether a user or an agent holds it.")
    id: str = Field(description="The holder's id.")
    at: datetime = Field(description="When the claim was made.")
    lease_epoch: int = Field(
        description="The claim's number (it grows with every claim): send it with heartbeat, complete, fail, release."
    )
    lease_expires_at: datetime | None = Field(
        description="When the claim lapses unless the holder heartbeats; null: it does not lapse (a person's claim)."
    )
    state: Literal["working", "slow", "stalled", "lapsed"] = Field(
        default="working",
        description="How the holder is doing: working; slow (progressing, but the item's SLA warned or "
        "breached); stalled (beating without progress past its stall ladder's first rung); lapsed (no "
        "heartbeat in time: the holder is presumed dead and the next claimer takes the item).",
    )


class SagaLink(BaseModel):
    """The saga step whose outcome the item decides."""

    saga_id: str = Field(description="The saga run's id.")
    step: str = Field(description="The step's name in the template.")
    step_index: int = Field(description="The step's position in the template, from 0.")
    phase: str = Field(description="forward (the step itself) or compensate (undoing it).")
    attempt: int = Field(description="Which attempt of the step the item belongs to, from 1.")
    member: int | None = Field(
        default=None, description="For a fan-out step: the position of the list element it is for; else null."
    )


class ItemHitl(BaseModel):
    """A human-in-the-loop requirement on a work item, put there by the routing rule that placed it."""

    required: bool = Field(description="Whether a person must approve before the gated transitions.")
    gates: list[str] = Field(description="Where approval is needed (e.g. privacy_review).")
    rule_id: str | None = Field(default=None, description="The routing rule that asked for it; null: none named.")


class WorkItemRead(BaseModel):
    """A work item as the API returns it: fields, status, offer, claim and lease, SLA, and the saga step it decides."""

    id: str = Field(description="The item's id, made by workyard (e.g. WI-ACME-TASK-20260101-...).")
    code: str = Field(description="The business code given at creation; the id if none was.")
    tenant: str = Field(description="The tenant the item belongs to.")
    type: str = Field(description="The work-item type; its JSON Schema holds the item's content.")
    lifecycle: str = Field(description="The lifecycle its status follows (canonical, work, backlog, chat or step).")
    origin: str | None = Field(description="backlog, chat or saga where that picked the lifecycle; else null.")
    title: str = Field(description="A short line saying what is to be done.")
    description: str | None = Field(description="Longer text; null: none.")
    priority: int = Field(description="0 (lowest) to 100 (highest).")
    status: str = Field(description="Where it stands in its lifecycle (GET .../transitions says where it may go).")
    created_by: str = Field(description="Who created it, as user:<id> or agent:<id>.")
    reporter: PartyRef | None = Field(description="Who asked for the work; null: nobody named.")
    assignee: PartyRef | None = Field(description="Who is to do it; null: nobody (it is offered).")
    labels: list[str] = Field(description="Its labels.")
    dependencies: list[str] = Field(description="Ids of items that must be resolved before this one is ready.")
    parent_id: str | None = Field(description="The item this one is part of; null: none.")
    payload: dict[str, Any] = Field(description="What the worker needs to do the work.")
    metadata: dict[str, Any] = Field(description="Anything else kept with the item.")
    result: Any = Field(default=None, description="What the item was completed with; null until then.")
    reason: str | None = Field(description="Why it last failed or was moved, where a reason was given; else null.")
    due_at: datetime | None = Field(description="When it should be done; null: no date.")
    idempotence_key: str | None = Field(description="The idempotence key it was created with; null: none.")
    offer: HumanOffer | AgentOffer | None = Field(description="Who may claim it; null: not offered.")
    risk_level: RiskLevel = Field(
        default=RiskLevel.low,
        description="Its effective risk level: its own where it raised its type's, else the type's.",
    )
    required_capabilities: list[str] = Field(
        default_factory=list,
        description="What an agent needs to be given it: its type's capabilities and its agent offer's capability.",
    )
    claim: ClaimRead | None = Field(description="Who holds it now; null: nobody.")
    lease_epoch: int = Field(description="The number of the latest claim (0: never claimed).")
    version: int = Field(
        description="Grows with every change: send it back (version or If-Match) to update only an unchanged item."
    )
    saga: SagaLink | None = Field(default=None, description="The saga step waiting on this item; null: none.")
    trace_id: str | None = Field(
        default=None,
        description="The OpenTelemetry trace id of the saga that opened it; null: none, or not traced.",
    )
    sla: SlaSpec | None = Field(default=None, description="The item's SLA; null: none.")
    sla_warned_at: datetime | None = Field(default=None, description="When its SLA warning fired; null: not yet.")
    sla_breached_at: datetime | None = Field(default=None, description="When its SLA target passed; null: not yet.")
    sla_breach_count: int = Field(default=0, description="How many SLA breach and escalation steps have fired.")
    hitl: ItemHitl | None = Field(
        default=None, description="A human-in-the-loop requirement its routing rule put on it; null: none."
    )
    progress: dict[str, Any] | None = Field(
        default=None, description="What its holder's heartbeats last reported; null: nothing yet under this claim."
    )
    progress_at: datetime | None = Field(
        default=None, description="When that progress last changed (or the claim began); null: never claimed."
    )
    stalled_at: datetime | None = Field(
        default=None, description="When its holder was found stalled (beating without progress); null: it is not."
    )
    raci: Raci | None = Field(default=None, description="Its RACI matrix; null: none.")
    related_goals: list[str] = Field(default_factory=list, description="Codes of the goals it serves.")
    risk_assessment: RiskAssessment | None = Field(default=None, description="Its risk assessment; null: none.")
    templates_applied: list[TemplateApplied] = Field(
        default_factory=list, description="The work-item templates it was made from."
    )
    timeout_ms: int | None = Field(default=None, description="Its limit from its start, in ms; null: none.")
    overall_timeout_ms: int | None = Field(default=None, description="Its limit from its creation, in ms; null: none.")
    compensation: CompensationPlan | None = Field(default=None, description="Its compensation plan; null: none.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")
    started_at: datetime | None = Field(description="When work on it started; null: not yet.")
    completed_at: datetime | None = Field(description="When it reached a terminal status; null: not yet.")
    deleted_at: datetime | None = Field(description="When it was deleted; null: it is not.")


class WorkItemPage(BaseModel):
    """One page of work items, with the cursor of the next page."""

    items: list[WorkItemRead] = Field(description="The items of this page, in the listing's order.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class TransitionRequest(BaseModel):
    """A request to move a work item to another status of its lifecycle, optionally at a known version."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        min_length=1,
        max_length=32,
        description=(
            "The status to move to; one its lifecycle does not allow from here is a 409 naming the allowed ones."
        ),
    )
    reason: str | None = Field(default=None, max_length=2000, description="Why, kept in the history; null: none.")
    version: int | None = Field(
        default=None, ge=1, description="Move only if the item is still at this version (409 otherwise)."
    )


class AllowedTransitions(BaseModel):
    """Where a work item may go next from its status, and which named actions apply there."""

    status: str = Field(description="The item's status now.")
    lifecycle: str = Field(description="The lifecycle it follows.")
    next: list[str] = Field(description="The statuses it may move to from here.")
    terminal: bool = Field(description="Whether the status ends the work (nothing may claim it).")
    can_complete: bool = Field(description="Whether the complete operation applies now.")
    can_close: bool = Field(description="Whether its lifecycle can close it from here.")
    can_send_back: bool = Field(description="Whether its lifecycle can send it back for rework from here.")


T = TypeVar("T")


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# A number field that refuses JSON true/false: pydantic's lax mode reads them as 1 and 0 (a lease of
# ``"ttl_s": true`` was one second). Not strict mode: that would refuse 2.0 for an integer, which JSON
# Schema counts as one.
NotBool = Annotated[T, BeforeValidator(_refuse_bool)]

TTL = "The lease's length in seconds (an agent's claim); null: the server's default (WORKYARD_WORK_LEASE_TTL_S)."
EPOCH = "The lease_epoch of the caller's claim: a holder whose claim was lost since gets a 409; null: not checked."


class ClaimRequest(BaseModel):
    """A request to claim a work item; an agent may ask for its lease's length."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: NotBool[float | None] = Field(default=None, gt=0, le=86_400, description=TTL)


class LeaseRequest(BaseModel):
    """The lease epoch the claim returned: a holder whose lease was lost gets a 409."""

    model_config = ConfigDict(extra="forbid")

    lease_epoch: NotBool[int | None] = Field(default=None, ge=1, description=EPOCH)


class HeartbeatRequest(LeaseRequest):
    """A claim holder's heartbeat: extends its lease, for the lease epoch it holds."""

    lease_epoch: NotBool[int] = Field(
        ge=1, description="The lease_epoch of the caller's claim; a lost or stale one is a 409."
    )
    ttl_s: NotBool[float | None] = Field(
        default=None,
        gt=0,
        le=86_400,
        description="The lease's length from now on, for this beat and the ones after it; null: keep the "
        "claim's own (the ttl_s it was claimed with, else WORKYARD_WORK_LEASE_TTL_S).",
    )
    progress: dict[str, Any] | None = Field(
        default=None,
        description='What the holder has done so far, any JSON object (e.g. {"done": 3, "of": 10}); '
        "kept on the item. A holder that keeps beating with the same progress for too long is stalled. "
        "Null: no news.",
    )


class ReleaseRequest(LeaseRequest):
    """A claim holder gives the work item back to its offer, with an optional reason."""

    reason: str | None = Field(default=None, max_length=2000, description="Why, kept in the history; null: none.")


# Bounded, so that no sum of costs in a budget period overflows a float.
MAX_COST = 1e12
COST = (
    "What the work cost, in the agent's budget unit (tokens or money), added to what the calling agent spent "
    "in its budget's period; recorded only for an agent in the registry. Null: nothing recorded."
)


class CompleteRequest(LeaseRequest):
    """A claim holder completes the work item with its result (what a waiting saga resumes with)."""

    result: Any = Field(
        default=None, description="Any JSON value; kept on the item and handed to a waiting saga. Default: null."
    )
    cost: NotBool[float | None] = Field(default=None, ge=0, le=MAX_COST, allow_inf_nan=False, description=COST)


class FailRequest(LeaseRequest):
    """A claim holder reports that the work item cannot be done, and why."""

    reason: str = Field(min_length=1, max_length=2000, description="Why it cannot be done, kept on the item.")
    cost: NotBool[float | None] = Field(default=None, ge=0, le=MAX_COST, allow_inf_nan=False, description=COST)


class EventRead(BaseModel):
    """One entry of a work item's audit trail: what changed, who changed it, when, from and to what."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The entry's number; later entries have larger ones.")
    action: str = Field(description="What happened: created, transition, claimed, released, assigned, updated, ...")
    actor: str = Field(
        description="Who did it, as user:<id> or agent:<id>; system: workyard itself (an SLA, a lease expiry)."
    )
    from_status: str | None = Field(description="The status before; null where the status did not change.")
    to_status: str | None = Field(description="The status after; null where the status did not change.")
    reason: str | None = Field(description="The reason given; null: none.")
    details: dict[str, Any] = Field(description="What else the action records (e.g. the fields an update changed).")
    at: datetime = Field(description="When it happened.")


class NextWorkMetadata(BaseModel):
    """Shaped exactly as the next-work doc's response."""

    priorityLevel: int = Field(description="The rule that chose the item, 1 (first) to 4; 0: no work available.")
    priorityDescription: str = Field(description="The rule in words.")
    matchedCriteria: list[str] = Field(description="The rule's criteria the item met (e.g. assigned_to_me).")


class NextWork(BaseModel):
    """The next-work answer: the work item to do next (or none), and which rule chose it."""

    work: WorkItemRead | None = Field(description="The item to do next; null: nothing for this user or agent.")
    metadata: NextWorkMetadata = Field(description="Which rule chose it.")


class WorkItemTypeCreate(BaseModel):
    """A request to register a work-item type: its JSON Schema and the lifecycle its items follow."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_.-]*$",
        description="The type's name, as items name it; types are immutable once registered.",
    )
    description: str = Field(default="", max_length=2000, description="What items of this type are for.")
    json_schema: dict[str, Any] = Field(
        alias="schema",
        description=(
            "JSON Schema (2020-12) that an item of this type (title, description, payload, metadata) must "
            "satisfy; only local $refs, patterns in RE2 syntax."
        ),
    )
    lifecycle: TypeLifecycle = Field(
        default="canonical", description="The lifecycle its items follow, unless their origin picks another."
    )
    capabilities: list[CapabilityName] = Field(
        default_factory=list,
        max_length=50,
        json_schema_extra={"uniqueItems": True},
        description="Capabilities an agent must declare to be given an item of this type ([]: none; each once).",
    )
    risk_level: RiskLevel = Field(
        default=RiskLevel.low,
        description="How much harm its items can do: sets the least autonomy (L1 for low ... L4 for critical) an "
        "agent needs; an item may raise it.",
    )
    approval_policy_id: PolicyId | None = Field(
        default=None,
        alias="approvalPolicyId",
        description=(
            "The operators' policy that gates every item of this type (registered first; a tenant's own policy "
            "of the same id does not loosen it). An item may name only this policy; null: none."
        ),
    )
    hitl: Hitl | None = Field(
        default=None,
        description="A human in the loop for every item of this type: a person must approve its completion; "
        "null: none.",
    )

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(value) != len(set(value)):
            raise ValueError("a capability is listed twice")
        return value


class WorkItemTypeRead(BaseModel):
    """A work-item type, built in or registered: its JSON Schema and lifecycle."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(description="The type's name.")
    description: str = Field(description="What items of this type are for.")
    # Read back under the name it is written with: WorkyardClient.list_types validates the API's answer.
    json_schema: dict[str, Any] = Field(
        validation_alias="schema",
        serialization_alias="schema",
        description="The JSON Schema an item of this type must satisfy.",
    )
    lifecycle: str = Field(description="The lifecycle its items follow, unless their origin picks another.")
    builtin: bool = Field(description="Whether workyard ships it (true) or an operator registered it.")
    capabilities: list[str] = Field(
        default_factory=list, description="Capabilities an agent must declare to be given its items."
    )
    risk_level: RiskLevel = Field(
        default=RiskLevel.low, description="How much harm its items can do (low, medium, high, critical)."
    )
    approval_policy_id: str | None = Field(
        default=None,
        validation_alias="approvalPolicyId",
        serialization_alias="approvalPolicyId",
        description="The policy that gates every item of this type; null: none.",
    )
    hitl: Hitl | None = Field(default=None, description="A human in the loop for every item of this type; null: none.")


class WebhookCreate(BaseModel):
    """A request to register a webhook: the URL that events of a tenant are POSTed to, and which events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://",
        description=(
            "Where events are POSTed. A host that is or names a loopback, private, link-local or metadata "
            "address is a 422 unless the operator allows private targets."
        ),
    )
    events: list[Subscription] = Field(
        min_length=1, max_length=20, description="The events to send, or '*' for all of them."
    )
    tenant: str | None = Field(
        default=None, min_length=1, max_length=64, description="Whose events. Default: the token's tenant."
    )


class WebhookRead(BaseModel):
    """A registered webhook (its signing secret is never shown again)."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The webhook's id.")
    tenant: str = Field(description='Whose events it hears ("*": every tenant\'s).')
    url: str = Field(description="Where events are POSTed.")
    events: list[str] = Field(description="The events it hears ('*': all).")
    created_by: str = Field(description="Who registered it, as user:<id> or agent:<id>.")
    created_at: datetime = Field(description="When it was registered.")
    disabled_at: datetime | None = Field(default=None, description="Set while the webhook is disabled.")


class WebhookWithSecret(WebhookRead):
    """A webhook with its signing secret: the answer to its creation and to a rotation, and only those."""

    secret: str = Field(description="The HMAC-SHA256 signing secret; shown this once.")


class DeliveryRead(BaseModel):
    """One delivery of one event to one webhook: its state, attempts, last answer, and the next attempt."""

    id: int = Field(description="The delivery's id (also sent as the X-Workyard-Delivery header).")
    webhook_id: str = Field(description="The webhook it goes to.")
    url: str = Field(description="The webhook's URL.")
    event: str = Field(description="The event's name.")
    state: str = Field(description="pending (to be sent or retried), delivered, or failed (attempts spent).")
    attempts: int = Field(description="How many times it was sent.")
    last_status: int | None = Field(description="The HTTP status of the last attempt; null: no answer or none yet.")
    last_error: str | None = Field(description="Why the last attempt failed, in short; null: it did not.")
    created_at: datetime = Field(description="When the event happened.")
    next_attempt_at: datetime = Field(description="When it is (or was last) due to be sent.")
    delivered_at: datetime | None = Field(description="When the receiver accepted it (2xx); null: not yet.")
