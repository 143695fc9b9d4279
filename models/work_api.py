"""Request and response bodies of the work-item API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

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

from models.principal import PrincipalType
from models.sla import SlaSpec

Label = Annotated[str, Field(min_length=1, max_length=100)]
ItemId = Annotated[str, Field(min_length=1, max_length=96)]


class PartyRef(BaseModel):
    """A user or an agent, as the next-work doc names them: ``{type, id}``."""

    model_config = ConfigDict(extra="forbid")

    type: PrincipalType
    id: str = Field(min_length=1, max_length=255)


class HumanOffer(BaseModel):
    """Offered to people holding ``scope`` (and, if given, in ``group``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["human"] = "human"
    scope: str = Field(default="work:claim", min_length=1, max_length=200)
    group: str | None = Field(default=None, min_length=1, max_length=200)


class AgentOffer(BaseModel):
    """Offered to agents; with ``capability``, only to agents that declare it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["agent"] = "agent"
    capability: str | None = Field(default=None, min_length=1, max_length=200)


Offer = Annotated[HumanOffer | AgentOffer, Field(discriminator="type")]


def _no_status(data: Any) -> Any:
    if isinstance(data, dict) and "status" in data:
        raise ValueError("status cannot be set here; use POST /api/v1/work-items/{id}/transition")
    return data


class WorkItemCreate(BaseModel):
    """A request to create a work item: its type, title, tenant, offer, assignee, payload, SLA and idempotence key."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    code: str | None = Field(default=None, min_length=1, max_length=96, description="Business code; default the id.")
    tenant: str | None = Field(default=None, min_length=1, max_length=64, description="Default: the token's tenant.")
    priority: int = Field(default=50, ge=0, le=100)
    reporter: PartyRef | None = Field(default=None, description="Default: the caller.")
    assignee: PartyRef | None = None
    labels: list[Label] = Field(default_factory=list, max_length=50)
    dependencies: list[ItemId] = Field(default_factory=list, max_length=200)
    parent_id: ItemId | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    due_at: AwareDatetime | None = None
    origin: Literal["backlog", "chat"] | None = Field(
        default=None, description="Picks the task-workflow doc's lifecycle for this origin."
    )
    offer: Offer | None = Field(default=None, description="Default: people with the work:claim scope.")
    sla: SlaSpec | None = None
    idempotence_key: str | None = Field(default=None, min_length=1, max_length=255)

    _reject_status = model_validator(mode="before")(_no_status)


# Fields of an update that cannot be null, and what to send to empty them instead.
_NOT_NULL = {
    "title": "",
    "priority": "",
    "labels": " ([] empties it)",
    "dependencies": " ([] empties it)",
    "payload": " ({} empties it)",
}


class WorkItemUpdate(BaseModel):
    """Fields to change; leave out what stays. ``version`` (or an If-Match header) makes the
    update conditional on nobody having changed the item since it was read."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)
    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    priority: int | None = Field(default=None, ge=0, le=100)
    reporter: PartyRef | None = None
    assignee: PartyRef | None = None
    labels: list[Label] | None = Field(default=None, max_length=50)
    dependencies: list[ItemId] | None = Field(default=None, max_length=200)
    parent_id: ItemId | None = None
    payload: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    due_at: AwareDatetime | None = None
    offer: Offer | None = None

    _reject_status = model_validator(mode="before")(_no_status)

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        # These cannot be cleared: a null would be stored as-is and break the item.
        if value is None:
            raise ValueError(f"cannot be null; leave {info.field_name} out to keep it{_NOT_NULL[str(info.field_name)]}")
        return value


class ClaimRead(BaseModel):
    """The claim on a work item: who holds it, since when, and its lease (epoch and expiry)."""

    type: PrincipalType
    id: str
    at: datetime
    lease_epoch: int
    lease_expires_at: datetime | None


class SagaLink(BaseModel):
    """The saga step whose outcome the item decides."""

    saga_id: str
    step: str
    step_index: int
    phase: str
    attempt: int
    member: int | None = None


class WorkItemRead(BaseModel):
    """A work item as the API returns it: fields, status, offer, claim and lease, SLA, and the saga step it decides."""

    id: str
    code: str
    tenant: str
    type: str
    lifecycle: str
    origin: str | None
    title: str
    description: str | None
    priority: int
    status: str
    created_by: str
    reporter: PartyRef | None
    assignee: PartyRef | None
    labels: list[str]
    dependencies: list[str]
    parent_id: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    result: Any = None
    reason: str | None
    due_at: datetime | None
    idempotence_key: str | None
    offer: HumanOffer | AgentOffer | None
    claim: ClaimRead | None
    lease_epoch: int
    version: int
    saga: SagaLink | None = None
    sla: SlaSpec | None = None
    sla_warned_at: datetime | None = None
    sla_breached_at: datetime | None = None
    sla_breach_count: int = 0
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deleted_at: datetime | None


class WorkItemPage(BaseModel):
    """One page of work items, with the cursor of the next page."""

    items: list[WorkItemRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class TransitionRequest(BaseModel):
    """A request to move a work item to another status of its lifecycle, optionally at a known version."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=32)
    reason: str | None = Field(default=None, max_length=2000)
    version: int | None = Field(default=None, ge=1)


class AllowedTransitions(BaseModel):
    """Where a work item may go next from its status, and which named actions apply there."""

    status: str
    lifecycle: str
    next: list[str]
    terminal: bool
    can_complete: bool
    can_close: bool
    can_send_back: bool


T = TypeVar("T")


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# A number field that refuses JSON true/false: pydantic's lax mode reads them as 1 and 0 (a lease of
# ``"ttl_s": true`` was one second). Not strict mode: that would refuse 2.0 for an integer, which JSON
# Schema counts as one.
NotBool = Annotated[T, BeforeValidator(_refuse_bool)]


class ClaimRequest(BaseModel):
    """A request to claim a work item; an agent may ask for its lease's length."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: NotBool[float | None] = Field(
        default=None, gt=0, le=86_400, description="An agent's lease; default from settings."
    )


class LeaseRequest(BaseModel):
    """The lease epoch the claim returned: a holder whose lease was lost gets a 409."""

    model_config = ConfigDict(extra="forbid")

    lease_epoch: NotBool[int | None] = Field(default=None, ge=1)


class HeartbeatRequest(LeaseRequest):
    """A claim holder's heartbeat: extends its lease, for the lease epoch it holds."""

    lease_epoch: NotBool[int] = Field(ge=1)
    ttl_s: NotBool[float | None] = Field(default=None, gt=0, le=86_400)


class ReleaseRequest(LeaseRequest):
    """A claim holder gives the work item back to its offer, with an optional reason."""

    reason: str | None = Field(default=None, max_length=2000)


class CompleteRequest(LeaseRequest):
    """A claim holder completes the work item with its result (what a waiting saga resumes with)."""

    result: Any = None


class FailRequest(LeaseRequest):
    """A claim holder reports that the work item cannot be done, and why."""

    reason: str = Field(min_length=1, max_length=2000)


class EventRead(BaseModel):
    """One entry of a work item's audit trail: what changed, who changed it, when, from and to what."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    actor: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    details: dict[str, Any]
    at: datetime


class NextWorkMetadata(BaseModel):
    """Shaped exactly as the next-work doc's response."""

    priorityLevel: int
    priorityDescription: str
    matchedCriteria: list[str]


class NextWork(BaseModel):
    """The next-work answer: the work item to do next (or none), and which rule chose it."""

    work: WorkItemRead | None
    metadata: NextWorkMetadata


class WorkItemTypeCreate(BaseModel):
    """A request to register a work-item type: its JSON Schema and the lifecycle its items follow."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    description: str = Field(default="", max_length=2000)
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema (2020-12) of an item of this type.")
    lifecycle: str = Field(default="canonical", description="canonical, work, backlog or chat.")


class WorkItemTypeRead(BaseModel):
    """A work-item type, built in or registered: its JSON Schema and lifecycle."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str
    json_schema: dict[str, Any] = Field(serialization_alias="schema")
    lifecycle: str
    builtin: bool


class WebhookCreate(BaseModel):
    """A request to register a webhook: the URL that events of a tenant are POSTed to, and which events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://", description="Where events are POSTed.")
    events: list[str] = Field(min_length=1, max_length=20, description="Event names, or '*' for all.")
    tenant: str | None = Field(default=None, min_length=1, max_length=64, description="Default: the token's tenant.")


class WebhookRead(BaseModel):
    """A registered webhook (its signing secret is never shown again)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant: str
    url: str
    events: list[str]
    created_by: str
    created_at: datetime
    disabled_at: datetime | None = Field(default=None, description="Set while the webhook is disabled.")


class WebhookWithSecret(WebhookRead):
    """A webhook with its signing secret: the answer to its creation and to a rotation, and only those."""

    secret: str = Field(description="The HMAC-SHA256 signing secret; shown this once.")


class DeliveryRead(BaseModel):
    """One delivery of one event to one webhook: its state, attempts, last answer, and the next attempt."""

    id: int
    webhook_id: str
    url: str
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
