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
# The key a retiring version adds to the live version's document (never a field of a policy's own).
RETIRED = "retired"
# The evidence a passing validator writes by itself.
SCAN_RESULT = "scan_result"


class Validator(BaseModel):
    """An automated check: a ``@step`` handler on a capability queue (``cap.<capability>``), so an
    external scanner is a handler. ``sync``: the gated transition waits for a passing result;
    ``async``: the transition goes through, the item is flagged for audit, and a failure opens a
    remediation item."""

    model_config = ConfigDict(extra="forbid")

    handler: Annotated[str, Field(min_length=1, max_length=200)] = Field(description="The handler's name.")
    capability: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_\-]{0,99}$")] = Field(
        description="The capability whose workers run it (queue cap.<capability>)."
    )
    mode: Literal["sync", "async"] = Field(
        default="sync",
        description="sync: the gate waits for a passing run; async: it does not, and a failure opens remediation.",
    )


class PolicyCheck(BaseModel):
    """One check of a policy (the spec's kind, framework, dataClassification, maxRiskLevel, required)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: CheckId | None = Field(
        default=None, description="How evidence and validations name the check; default: its kind (must be unique)."
    )
    kind: CheckKind = Field(description="What the check is about.")
    framework: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="The compliance framework (e.g. PCI-DSS); null: none."
    )
    data_classification: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        description="The data classification it concerns (e.g. RESTRICTED); null: none.",
        default=None,
        alias="dataClassification",
    )
    max_risk_level: SpecRisk | None = Field(
        default=None,
        alias="maxRiskLevel",
        description="An item above this risk level needs evidence naming the check (a risk acceptance).",
    )
    required: bool = Field(default=False, description="The gate needs evidence (or a passing validator) for it.")
    validator: Validator | None = Field(
        default=None, description="The handler that runs the check automatically; null: evidence satisfies it."
    )

    @property
    def name(self) -> str:
        return self.id or self.kind

    def max_risk(self) -> RiskLevel | None:
        return RiskLevel(self.max_risk_level.lower()) if self.max_risk_level is not None else None


class ApprovalStep(BaseModel):
    """A person (or agent) holding ``role`` must approve; each step needs a different approver."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="The role (a group of the approver's token) whose member must approve.")
    action: Literal["approve"] = Field(default="approve", description="What the step asks for: approve.")


class PolicySpec(BaseModel):
    """A policy's definition: checks, approval steps, and the transitions it gates."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: PolicyId = Field(description="The policy's id (what an item's approvalPolicyId names).")
    description: Annotated[str, Field(max_length=2000)] = Field(default="", description="What the policy is for.")
    checks: list[PolicyCheck] = Field(
        description="Checks the gate needs evidence or passing validators for.", default_factory=list, max_length=50
    )
    approval_steps: list[ApprovalStep] = Field(
        description="Approval steps, each by a different person.",
        default_factory=list,
        max_length=10,
        alias="approvalSteps",
    )
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

    tenant: str = Field(description="Whose: a tenant, or '*' (an operator's, shared by every tenant).")
    version: int = Field(description="The version (1 and up).")
    created_by: str = Field(description="Who registered this version.")
    created_at: datetime = Field(description="When this version was registered.")
    retired: bool = Field(
        default=False,
        description="Whether this version retired the policy (DELETE): it gates nothing new; registering "
        "the policy again brings it back.",
    )


class PolicyList(BaseModel):
    """The live policies a token sees."""

    policies: list[PolicyRead] = Field(description="The live version of each policy.")


class ArtifactIn(BaseModel):
    """An artifact of evidence: inline ``content`` (its SHA-256 is computed; a declared ``sha256``
    must match), or an external one at ``uri`` with its declared ``sha256``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: EvidenceId | None = Field(default=None, description="Default: ART-<evidence id>-<n>.")
    name: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None, description="A name for people; null: none."
    )
    media_type: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        description="The content's media type; null: unknown.", default=None, alias="mediaType"
    )
    content: Annotated[str, Field(max_length=65_536)] | None = Field(
        default=None, description="Inline content (text, up to 64 KiB): its SHA-256 is computed."
    )
    uri: Annotated[str, Field(min_length=1, max_length=2000)] | None = Field(
        default=None, description="Where an external artifact is kept."
    )
    sha256: Sha256 | None = Field(
        default=None,
        description="The artifact's SHA-256 (64 lower-case hex digits): required with uri; must match inline content.",
    )


class ArtifactRead(BaseModel):
    """An artifact as stored: its id, digest, and inline content or external uri."""

    id: str = Field(description="The artifact's id.")
    name: str | None = Field(default=None, description="A name for people; null: none.")
    media_type: str | None = Field(
        description="The media type; null: unknown.", default=None, serialization_alias="mediaType"
    )
    uri: str | None = Field(default=None, description="Where an external artifact is kept; null: inline.")
    sha256: str = Field(description="The artifact's SHA-256.")
    size: int | None = Field(default=None, description="Bytes of inline content; null: external.")
    content: str | None = Field(default=None, description="Inline content; null: external.")


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
    metadata: dict[str, Any] = Field(description="Anything else to keep with the evidence.", default_factory=dict)
    artifacts: list[ArtifactIn] = Field(
        description="What the evidence is made of (1 to 50).", min_length=1, max_length=50
    )


class EvidenceRead(BaseModel):
    """Evidence as stored (the spec's schema)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The evidence's id.")
    policy_id: str | None = Field(description="The policy it is for; null: none.", serialization_alias="policyId")
    policy_version: int | None = Field(description="The policy's version then.", serialization_alias="policyVersion")
    work_item_id: str = Field(description="The item it is for.", serialization_alias="workItemId")
    evidence_type: str = Field(description="What kind of evidence it is.", serialization_alias="evidenceType")
    checks: list[str] = Field(description="The policy's checks it satisfies.")
    created_by: str = Field(
        description="Who wrote it (validator:<handler> for a validator's scan result).", serialization_alias="createdBy"
    )
    created_at: datetime = Field(description="When it was written.", serialization_alias="createdAt")
    metadata: dict[str, Any] = Field(description="Anything else kept with it.")
    artifacts: list[ArtifactRead] = Field(description="Its artifacts, each with its SHA-256.")


class ApprovalCreate(BaseModel):
    """A decision on the gate the item is at: one approval step (by index or role; default: the
    first pending step whose role the caller holds)."""

    model_config = ConfigDict(extra="forbid")

    step: int | None = Field(default=None, ge=0, le=9, description="The policy's approval step, by index.")
    role: Role | None = Field(
        default=None,
        description="The step, by its role; null: by step, or the first pending step whose role the caller holds.",
    )
    decision: Decision = Field(description="approve or reject.")
    justification: Annotated[str, Field(min_length=1, max_length=4000)] = Field(
        description="Why: kept with the decision."
    )
    evidence: list[EvidenceId] = Field(default_factory=list, max_length=50, description="Evidence ids it rests on.")


class ApprovalRead(BaseModel):
    """One decision at a gate: who, when, why, on what evidence."""

    id: str = Field(description="The decision's id.")
    work_item_id: str = Field(description="The item.")
    policy_id: str | None = Field(description="The item's policy then; null: hitl only.")
    policy_version: int | None = Field(description="The policy's version then.")
    status: str = Field(description="The item's status when it was made: the gate out of it is what it decides.")
    step: int | None = Field(description="The approval step; null: a human-in-the-loop approval (no policy step).")
    role: str | None = Field(description="The step's role; null: a hitl approval.")
    decision: Decision = Field(description="approve or reject.")
    approver: str = Field(description="Who decided (user:<id> or agent:<id>).")
    justification: str = Field(description="Why.")
    evidence: list[str] = Field(description="Evidence ids it rests on.")
    created_at: datetime = Field(description="When.")


class ValidationCreate(BaseModel):
    """Run a check's validator now."""

    model_config = ConfigDict(extra="forbid")

    check: CheckId = Field(description="The id of the policy's check whose validator to run.")


class ValidationRead(BaseModel):
    """One run of a check's validator and its outcome."""

    id: str = Field(description="The run's id.")
    work_item_id: str = Field(description="The item.")
    policy_id: str = Field(description="The item's policy.")
    policy_version: int = Field(description="Its version then.")
    check: str = Field(description="The check.")
    handler: str = Field(description="The validator's handler.")
    capability: str = Field(description="The capability whose workers run it.")
    mode: str = Field(description="sync or async.")
    state: ValidationState = Field(description="pending, passed or failed.")
    result: Any = Field(default=None, description="What the handler returned; null: nothing yet.")
    error: str | None = Field(default=None, description="Why it failed; null: it did not.")
    evidence_id: str | None = Field(default=None, description="The scan_result evidence a passing run wrote.")
    remediation_item_id: str | None = Field(
        default=None, description="The remediation item a failing async run opened."
    )
    requested_by: str = Field(description="Who asked for the run (or whose transition dispatched it).")
    requested_at: datetime = Field(description="When it was dispatched.")
    finished_at: datetime | None = Field(default=None, description="When its result was recorded; null: pending.")


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

    path: str = Field(description="Where in the policy (or item) the missing thing is named.")
    message: str = Field(description="What is missing, in words.")
    kind: Literal["policy", "approval", "rejected", "human_approval", "evidence", "validation", "risk"] = Field(
        description="policy, approval, rejected, human_approval, evidence, validation or risk."
    )
    policy: str | None = Field(default=None, description="The policy; null: not a policy's.")
    step: int | None = Field(default=None, description="The approval step; null: not a step.")
    role: str | None = Field(default=None, description="The step's role; null: not a step.")
    check: str | None = Field(default=None, description="The check; null: not a check.")
    state: str | None = Field(
        default=None, description="The check's validator run: not_requested, pending or failed; null: not a validation."
    )


class GateRead(BaseModel):
    """The gates out of the item's current status, and what each still lacks."""

    status: str = Field(description="The item's status.")
    policy_id: str | None = Field(description="The policy gating the item (its own, else its type's); null: none.")
    policy_version: int | None = Field(description="The live version; null: none registered.")
    hitl: bool = Field(description="Whether a person must approve (a hitl requirement).")
    pending_since: datetime | None = Field(
        description="When the item entered its status (the gate's round began); null: no gate."
    )
    gates: list[GateStatus] = Field(description="The gated transitions out of the status.")


class GateStatus(BaseModel):
    """One gated transition out of the item's status: open, or what it lacks."""

    to: str = Field(description="The status the transition leads to.")
    open: bool = Field(description="Whether it would pass now.")
    missing: list[MissingItem] = Field(description="What it lacks.")


GateRead.model_rebuild()
