"""API schemas of the pauses of templates and capability queues (``/api/v1/.../pause``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.enums import PauseKind


class PauseBody(BaseModel):
    """Why an operator pauses or resumes a template or a capability, and for whom."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why; kept with the pause and in its audit trail.")
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})$",
        description="Whose sagas it holds: left out, the token's tenant (an all-tenants token: every tenant, *). "
        "Only an all-tenants token names another tenant.",
    )


class PauseRead(BaseModel):
    """A pause in force: what it holds, for whom, who paused it, when and why."""

    model_config = ConfigDict(from_attributes=True)

    kind: PauseKind = Field(description="template or capability.")
    name: str = Field(description="The template's name, or the capability (its queue is cap.<capability>).")
    tenant: str = Field(description="Whose sagas it holds; *: every tenant's.")
    paused_at: datetime = Field(description="When it was paused.")
    actor: str = Field(description="Who paused it, as user:<id> or agent:<id>.")
    reason: str = Field(description="Why, as the actor said.")
    held: int = Field(
        default=0, description="Sagas (of the caller's tenant, or all for an all-tenants token) it holds now."
    )


class PauseAuditRead(BaseModel):
    """One pause or resume of a template or capability: who did it, when and why."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime = Field(description="When it was done.")
    actor: str = Field(description="Who did it, as user:<id> or agent:<id>.")
    action: str = Field(description="pause or resume.")
    kind: PauseKind = Field(description="template or capability.")
    name: str = Field(description="The template's name, or the capability.")
    tenant: str = Field(description="Whose sagas it held; *: every tenant's.")
    reason: str = Field(description="Why, as the actor said.")
    detail: dict[str, Any] = Field(description="A resume: how many held dispatches it sent (sent).")


class PauseControlRead(BaseModel):
    """What a pause or resume did."""

    pause: PauseRead = Field(description="The pause (a resume: as it was until then).")
    resumed: bool = Field(description="Whether this resumed it (false: it paused it).")
    sent: int = Field(
        default=0,
        description="A resume: the sagas it released, oldest first (each one's held dispatch sent, or held again by "
        "another pause that holds it too: its own, or its capability's). An orchestrator that sees the pause gone "
        "first may release some itself: they are not counted here.",
    )
