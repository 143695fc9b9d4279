"""The work-items spec's fields about who answers for an item and how it is undone (§2, §3, §6):
RACI, related goals, risk assessment, templates applied, item-level timeouts, and the
compensation plan.

Fields are spelled as the rest of the API spells them (snake_case); the spec's spelling
(``relatedGoals``, ``actionId``, ...) is accepted for each, both at once is refused.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.spellings import accept_spellings

# A principal as RACI names one: user:<id> or agent:<id> (as models.work_api.PARTY_PATTERN, which
# imports this module).
PARTY_PATTERN = r"^(user|agent):[\s\S]+$"
Party = Annotated[str, Field(min_length=6, max_length=300, pattern=PARTY_PATTERN)]
# Goal codes (the spec's "goal codes"): upper-case words joined by dashes, e.g. GOAL-FINSERV-001.
GOAL_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$"
GoalCode = Annotated[str, Field(min_length=3, max_length=96, pattern=GOAL_PATTERN)]
# The longest an item-level timeout may be: a year, as a saga's deadline.
MAX_TIMEOUT_MS = 366 * 86_400_000

# A step's or handler's name and a semantic version, as models.template spells them (which imports
# the work API, and so cannot be imported here).
NAME = r"^[A-Za-z][A-Za-z0-9_.\-]{0,199}$"
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\Z")
SEMVER_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
# A work-item template's id (models.item_templates): tpl:<name>:<version>, or another catalog's.
TEMPLATE_ID = r"^[A-Za-z][A-Za-z0-9_.:+\-]{0,199}$"
_STEP_NAME = re.compile(NAME.removeprefix("^").removesuffix("$"))
RiskAssessmentLevel = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


def _unique(values: list[str], what: str) -> list[str]:
    if len(values) != len(set(values)):
        raise ValueError(f"a {what} is listed twice")
    return values


class Raci(BaseModel):
    """Who is Responsible, Accountable, Consulted and Informed for the item (the spec's RACI matrix)."""

    model_config = ConfigDict(extra="forbid")

    responsible: list[Party] = Field(
        default_factory=list, max_length=50, description="Who does the work: user:<id> or agent:<id>, each once."
    )
    accountable: Party | None = Field(
        default=None, description="The one who answers for it (user:<id> or agent:<id>); null: nobody named."
    )
    consulted: list[Party] = Field(default_factory=list, max_length=50, description="Whose opinion is asked.")
    informed: list[Party] = Field(default_factory=list, max_length=50, description="Who is kept up to date.")

    @field_validator("responsible", "consulted", "informed")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        return _unique(value, "principal")


class RiskAssessment(BaseModel):
    """The spec's risk assessment of a change: its level, what mitigates it, and notes."""

    model_config = ConfigDict(extra="forbid")

    risk_level: RiskAssessmentLevel = Field(description="LOW, MEDIUM, HIGH or CRITICAL (also accepted as riskLevel).")
    mitigations: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=list, max_length=50, description="What reduces the risk, one line each."
    )
    notes: str | None = Field(default=None, max_length=20_000, description="Anything else the assessor wrote.")

    _spellings = model_validator(mode="before")(accept_spellings({"riskLevel": "risk_level"}))


class TemplateApplied(BaseModel):
    """A work-item template, by id and version, that the item was made from."""

    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(
        pattern=TEMPLATE_ID,
        description="The template's id, such as tpl:change:pci:1.0.0 (also accepted as templateId).",
    )
    version: str = Field(
        max_length=64,
        json_schema_extra={"pattern": SEMVER_PATTERN},
        description="The template's semantic version (MAJOR.MINOR.PATCH[-PRERELEASE]).",
    )

    _spellings = model_validator(mode="before")(accept_spellings({"templateId": "template_id"}))

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if SEMVER.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not a semantic version such as 1.0.0 (no +build)")
        return value


class CompensationStep(BaseModel):
    """One action of a compensation plan: the handler to run, and which failure it answers."""

    model_config = ConfigDict(extra="forbid")

    action_id: str = Field(
        pattern=NAME,
        description=(
            "The compensation handler to run (also accepted as actionId): a handler that a saga template of "
            "the tenant registers as a step's compensate (or handler); it runs on that step's capability queue."
        ),
    )
    on: Literal["failure_of", "any_failure"] = Field(
        description="failure_of: undoes target_step; any_failure: runs whatever failed (target_step may be *)."
    )
    target_step: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "The step of the item's run it undoes (also accepted as targetStep): a step of the item's saga "
            "template, or of the template that registers the action; * : any step."
        ),
    )

    _spellings = model_validator(mode="before")(
        accept_spellings({"actionId": "action_id", "targetStep": "target_step"})
    )

    @field_validator("target_step")
    @classmethod
    def _step_name(cls, value: str) -> str:
        if value != "*" and _STEP_NAME.fullmatch(value) is None:
            raise ValueError("must be * or a step name (a letter, then letters, digits, _ . -)")
        return value


class CompensationRetry(BaseModel):
    """How often each compensation action is retried, and the wait between tries."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=3, ge=0, le=100, description="Retries after the first try (maxRetries).")
    backoff_ms: int = Field(
        default=1000, ge=0, le=86_400_000, description="The wait before the first retry, doubling after (backoffMs)."
    )

    _spellings = model_validator(mode="before")(
        accept_spellings({"maxRetries": "max_retries", "backoffMs": "backoff_ms"})
    )


class CompensationPlan(BaseModel):
    """How the item's external effects are undone (the spec's §6 plan): run as a saga by
    ``POST /api/v1/work-items/{id}/compensate``, the actions in reverse order of their listing."""

    model_config = ConfigDict(extra="forbid")

    steps: list[CompensationStep] = Field(
        min_length=1,
        max_length=50,
        description="The actions, listed in the order the work they undo was done; they run in reverse.",
    )
    coordinator: str | None = Field(
        default=None, max_length=200, description="Informational (the spec's coordinator); workyard runs the plan."
    )
    retry_policy: CompensationRetry = Field(
        default_factory=CompensationRetry, description="Retries of each action (also accepted as retryPolicy)."
    )

    _spellings = model_validator(mode="before")(accept_spellings({"retryPolicy": "retry_policy"}))

    @model_validator(mode="after")
    def _once(self) -> CompensationPlan:
        seen: set[tuple[str, str, str]] = set()
        for step in self.steps:
            key = (step.action_id, step.on, step.target_step)
            if key in seen:
                raise ValueError(f"action {step.action_id!r} for {step.target_step!r} is listed twice")
            seen.add(key)
        return self


TimeoutMs = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MS)]
