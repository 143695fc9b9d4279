"""Policies (the work-items spec §7): the checks and approval steps that gate an item's
transitions, as registered, and the API's documents for approvals, evidence and validations.

A policy is versioned like a routing rule: every registration with a new definition is a new
version of its id, the latest the live one. An item names its policy by ``approvalPolicyId`` in
its payload (the change type requires it there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.agents import RiskLevel

PolicyId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
CheckId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
# A role is a group a principal's token puts it in (``workyard token create --group``).
Role = Annotated[str, Field(min_length=1, max_length=200)]
# "<from>-><to>", ``*`` for any from-status: the transitions a policy gates.
GateName = Annotated[str, Field(min_length=4, max_length=80, pattern=r"^(\*|[a-z_]+)->[a-z_]+$")]
EvidenceId = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="A SHA-256 digest: 64 lower-case hex digits.")]

CheckKind = Literal["compliance", "privacy", "risk", "security", "custom"]
# The spec's risk levels are upper case; they map onto workyard's (models.agents.RiskLevel).
SpecRisk = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Decision = Literal["approve", "reject"]
ValidationState = Literal["pending", "passed", "failed"]

# The item's payload field that names its policy (the spec's ChangeWorkItem.approvalPolicyId).
POLICY_FIELD = "approvalPolicyId"
# The evidence a passing validator writes by itself.
SCAN_RESULT = "scan_result"


class Validator(BaseModel):
    """An automated check: a ``@step`` handler on a capability queue (``cap.<capability>``), so an
    external scanner is a handler. ``sync``: the gated transition waits for a passing result;
    ``async``: the transition goes through, the item is flagged for audit, and a failure opens a
    remediation item."""

    model_config = ConfigDict(extra="forbid")

    handler: Annotated[str, Field(min_length=1, max_length=200)] = Field(description="The handler's name.")
    capability: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="The capability whose workers run it (queue cap.<capability>)."
    )
    mode: Literal["sync", "async"] = "sync"


class PolicyCheck(BaseModel):
    """One check of a policy (the spec's kind, framework, dataClassification, maxRiskLevel, required)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: CheckId | None = Field(
        default=None, description="How evidence and validations name the check; default: its kind (must be unique)."
    )
    kind: CheckKind
    framework: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    data_classification: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, alias="dataClassification"
    )
    max_risk_level: SpecRisk | None = Field(
        default=None,
        alias="maxRiskLevel",
        description="An item above this risk level needs evidence naming the check (a risk acceptance).",
    )
    required: bool = Field(default=False, description="The gate needs evidence (or a passing validator) for it.")
    validator: Validator | None = None

    @property
    def name(self) -> str:
        return self.id or self.kind

    def max_risk(self) -> RiskLevel | None:
        return RiskLevel(self.max_risk_level.lower()) if self.max_risk_level is not None else None


class ApprovalStep(BaseModel):
    """A person (or agent) holding ``role`` must approve; each step needs a different approver."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    action: Literal["approve"] = "approve"


class PolicySpec(BaseModel):
    """A policy's definition: checks, approval steps, and the transitions it gates."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: PolicyId
    description: Annotated[str, Field(max_length=2000)] = ""
    checks: list[PolicyCheck] = Field(default_factory=list, max_length=50)
    approval_steps: list[ApprovalStep] = Field(default_factory=list, max_length=10, alias="approvalSteps")
    gates: list[GateName] | None = Field(
        default=None,
        max_length=20,
        description=(
            "Transitions gated, as '<from>-><to>' ('*' for any from-status). Null: every transition into a "
            "status where the work counts as done, and planned->in_progress where the lifecycle has it."
        ),
    )

    def repeated_checks(self) -> list[int]:
        """Indexes of checks whose id (default: the kind) an earlier check has already."""
        names = [c.name for c in self.checks]
        return [n for n, name in enumerate(names) if name in names[:n]]

    def check(self, name: str) -> PolicyCheck | None:
        return next((c for c in self.checks if c.name == name), None)


class PolicyCreate(PolicySpec):
    """A policy to register: for a tenant's token, its tenant's; an all-tenant token names one, or '*'."""

    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="All-tenant tokens: the tenant ('*' or left out: the operators' shared policy)."
    )

    def spec(self) -> PolicySpec:
        return PolicySpec.model_validate(self.model_dump(exclude={"tenant"}))


class PolicyRead(PolicySpec):
    """One version of a policy as stored."""

    tenant: str
    version: int
    created_by: str
    created_at: datetime


class PolicyList(BaseModel):
    """The live policies a token sees."""

    policies: list[PolicyRead]


class ArtifactIn(BaseModel):
    """An artifact of evidence: inline ``content`` (its SHA-256 is computed; a declared ``sha256``
    must match), or an external one at ``uri`` with its declared ``sha256``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: EvidenceId | None = Field(default=None, description="Default: ART-<evidence id>-<n>.")
    name: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    media_type: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(default=None, alias="mediaType")
    content: Annotated[str, Field(max_length=65_536)] | None = None
    uri: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    sha256: Sha256 | None = None


class ArtifactRead(BaseModel):
    """An artifact as stored: its id, digest, and inline content or external uri."""

    id: str
    name: str | None = None
    media_type: str | None = Field(default=None, serialization_alias="mediaType")
    uri: str | None = None
    sha256: str
    size: int | None = None
    content: str | None = None


class EvidenceCreate(BaseModel):
    """Evidence for a gate (the spec's schema; createdBy and createdAt are the server's)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: EvidenceId = Field(description="Yours, unique in the tenant: the same id and body again answers the same.")
    policy_id: PolicyId | None = Field(default=None, alias="policyId", description="Default: the item's policy.")
    work_item_id: Annotated[str, Field(min_length=1, max_length=96)] | None = Field(
        default=None, alias="workItemId", description="Must be the item of the path if given."
    )
    evidence_type: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        alias="evidenceType", description="e.g. attachment, signed_approval, scan_result, risk_acceptance."
    )
    checks: list[CheckId] = Field(
        default_factory=list, max_length=50, description="The policy's checks this evidence satisfies."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[ArtifactIn] = Field(min_length=1, max_length=50)


class EvidenceRead(BaseModel):
    """Evidence as stored (the spec's schema)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    policy_id: str | None = Field(serialization_alias="policyId")
    policy_version: int | None = Field(serialization_alias="policyVersion")
    work_item_id: str = Field(serialization_alias="workItemId")
    evidence_type: str = Field(serialization_alias="evidenceType")
    checks: list[str]
    created_by: str = Field(serialization_alias="createdBy")
    created_at: datetime = Field(serialization_alias="createdAt")
    metadata: dict[str, Any]
    artifacts: list[ArtifactRead]


class ApprovalCreate(BaseModel):
    """A decision on the gate the item is at: one approval step (by index or role; default: the
    first pending step whose role the caller holds)."""

    model_config = ConfigDict(extra="forbid")

    step: int | None = Field(default=None, ge=0, le=9, description="The policy's approval step, by index.")
    role: Role | None = None
    decision: Decision
    justification: Annotated[str, Field(min_length=1, max_length=4000)]
    evidence: list[EvidenceId] = Field(default_factory=list, max_length=50, description="Evidence ids it rests on.")


class ApprovalRead(BaseModel):
    """One decision at a gate: who, when, why, on what evidence."""

    id: str
    work_item_id: str
    policy_id: str | None
    policy_version: int | None
    status: str = Field(description="The item's status when it was made: the gate out of it is what it decides.")
    step: int | None = Field(description="The approval step; null: a human-in-the-loop approval (no policy step).")
    role: str | None
    decision: Decision
    approver: str
    justification: str
    evidence: list[str]
    created_at: datetime


class ValidationCreate(BaseModel):
    """Run a check's validator now."""

    model_config = ConfigDict(extra="forbid")

    check: CheckId


class ValidationRead(BaseModel):
    """One run of a check's validator and its outcome."""

    id: str
    work_item_id: str
    policy_id: str
    policy_version: int
    check: str
    handler: str
    capability: str
    mode: str
    state: ValidationState
    result: Any = None
    error: str | None = None
    evidence_id: str | None = None
    remediation_item_id: str | None = None
    requested_by: str
    requested_at: datetime
    finished_at: datetime | None = None


class ValidationInput(BaseModel):
    """What a validator handler is given: the item, the policy and the check."""

    work_item_id: str
    tenant: str
    type: str
    title: str
    payload: dict[str, Any]
    risk_level: str
    policy_id: str
    policy_version: int
    check: dict[str, Any]


class ValidationVerdict(BaseModel):
    """What a validator handler returns."""

    passed: bool
    summary: Annotated[str, Field(max_length=4000)] = ""
    findings: list[Any] = Field(default_factory=list)


class MissingItem(BaseModel):
    """One thing a gated transition lacks (also one entry of a 409's details)."""

    path: str
    message: str
    kind: Literal["policy", "approval", "rejected", "human_approval", "evidence", "validation", "risk"]
    policy: str | None = None
    step: int | None = None
    role: str | None = None
    check: str | None = None
    state: str | None = None


class GateRead(BaseModel):
    """The gates out of the item's current status, and what each still lacks."""

    status: str
    policy_id: str | None
    policy_version: int | None
    hitl: bool
    pending_since: datetime | None
    gates: list[GateStatus]


class GateStatus(BaseModel):
    """One gated transition out of the item's status: open, or what it lacks."""

    to: str
    open: bool
    missing: list[MissingItem]


GateRead.model_rebuild()
