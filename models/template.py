"""Saga templates as data: steps, retry policies, key templates; validated before they are stored."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from models.item_plans import NAME, SEMVER, SEMVER_PATTERN
from models.keytemplate import placeholders
from models.schemas import SchemaProblem, check_schema, validator_for
from models.sla import SlaSpec
from models.step_item import CompletionPolicy, WorkItemStepSpec

# SEMVER (matched whole, no +BUILD: it gives no precedence, so two versions differing only by it
# would tie for "latest"), SEMVER_PATTERN (the same for the OpenAPI) and NAME live in models.item_plans.
CAPABILITY = r"^[a-z0-9][a-z0-9_\-]{0,99}$"


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key for semantic versions: pre-releases sort before their release."""
    match = SEMVER.fullmatch(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre = match.groups()
    pre_key: tuple[Any, ...] = (1,)
    if pre:
        pre_key = (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (int(major), int(minor), int(patch), pre_key)


class RetryPolicy(BaseModel):
    """How often a step is tried and how long to wait between tries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=1000, description="Tries in all, the first one included.")
    initial_ms: int = Field(default=200, ge=0, le=86_400_000, description="Wait before the second try, in ms.")
    max_ms: int = Field(
        default=30_000, ge=0, le=86_400_000, description="Longest wait between tries, in ms; at least initial_ms."
    )
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0, description="Each wait is the last one times this.")
    jitter: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Each wait is spread at random by up to this fraction of it."
    )

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RetryPolicy:
        if self.max_ms < self.initial_ms:
            raise ValueError("max_ms must be at least initial_ms")
        return self

    def delay_ms(self, attempt: int, rand: float = 0.5) -> int:
        """Backoff before the try after ``attempt`` (1-based); ``rand`` in [0, 1) spreads it."""
        base = min(float(self.max_ms), self.initial_ms * self.multiplier ** max(attempt - 1, 0))
        spread = base * self.jitter * (2.0 * rand - 1.0)
        return max(0, round(base + spread))


KEY_ROOTS = ("input", "saga_id", "step", "template", "version")


def _present(*names: str, **types: str) -> dict[str, Any]:
    """JSON Schema: these fields are given and not null (``types``: of that JSON type)."""
    return {"properties": {n: {"type": types.get(n, "string")} for n in names}, "required": list(names)}


# The rules StepSpec's validators hold a step to, as JSON Schema, so that the OpenAPI says them:
# one shape per kind, and the fields that go together or exclude each other. Only in the schema:
# the model stays one class (a step without "kind" is a handler step, which a discriminated union
# could not say), and its validators give the clearer messages.
STEP_RULES: dict[str, Any] = {
    "oneOf": [
        {
            "title": "handler step",
            "properties": {
                "kind": {"const": "handler"},
                "capability": {"type": "string"},
                "handler": {"type": "string"},
                "work_item": {"type": "null"},
            },
            "required": ["capability", "handler"],
        },
        {
            "title": "work_item step",
            "properties": {
                "kind": {"const": "work_item"},
                "work_item": {"type": "object"},
                "handler": {"type": "null"},
                "mutex_scope": {"type": "null"},
            },
            "required": ["kind", "work_item"],
        },
    ],
    "allOf": [
        {"not": _present("compensate", "compensate_work_item", compensate_work_item="object")},
        {"not": _present("for_each", "mutex_scope")},
        {"anyOf": [{"not": _present("compensate")}, _present("capability")]},
        # completion applies to fan-outs only: without for_each it may only restate the default.
        {
            "anyOf": [
                _present("for_each"),
                {"properties": {"completion": {"properties": {"policy": {"const": "all"}, "k": {"type": "null"}}}}},
            ]
        },
    ],
}


class StepSpec(BaseModel):
    """One step of a saga template: a handler on a capability or a work item; compensation, retries, mutex scope."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=STEP_RULES)

    name: str = Field(pattern=NAME, description="The step's name, unique in its template; results are kept under it.")
    # "handler": a Celery task on cap.<capability>. "work_item": the orchestrator creates a work
    # item for a person or an agent and the saga waits for it, holding no worker slot.
    kind: Literal["handler", "work_item"] = Field(
        default="handler",
        description=(
            "handler: a task on queue cap.<capability> runs handler (both needed). work_item: the saga waits for "
            "the work item work_item describes (needed), holding no worker slot."
        ),
    )
    capability: str | None = Field(
        default=None,
        pattern=CAPABILITY,
        validate_default=True,
        description="Queue cap.<capability> runs the handler (and compensation).",
    )
    handler: str | None = Field(
        default=None, pattern=NAME, validate_default=True, description="The @step handler's name (kind handler)."
    )
    work_item: WorkItemStepSpec | None = Field(default=None, description="The item a work_item step waits on.")
    for_each: str | None = Field(
        default=None,
        pattern=r"^\{(input|results)(\.[A-Za-z_][A-Za-z0-9_]*)+\}$",
        description=(
            "Fan out: one member per element of this list, e.g. {input.documents}: a work item each "
            "(kind work_item) or a handler call each (kind handler), run in parallel."
        ),
    )
    completion: CompletionPolicy = Field(default_factory=CompletionPolicy, description="When a fan-out is done.")
    compensate: str | None = Field(default=None, pattern=NAME, description="Handler that undoes the step.")
    compensate_work_item: WorkItemStepSpec | None = Field(
        default=None, description="Or: a work item that undoes it (e.g. 'call the customer')."
    )
    retry: RetryPolicy = Field(default=RetryPolicy(), description="How often the step is tried.")
    compensate_retry: RetryPolicy | None = Field(
        default=None, description="How often its compensation is tried; null: as retry says."
    )
    timeout_ms: int | None = Field(
        default=None,
        ge=1,
        le=86_400_000,
        description=(
            "An attempt not reported within this long counts as failed; null: the server's step watchdog "
            "(WORKYARD_STEP_WATCHDOG_S)."
        ),
    )
    idempotence_key: str | None = Field(
        default=None,
        max_length=400,
        description=(
            "The key the handler gets as ctx.idempotence_key, with placeholders such as {input.order_id} "
            "(from input, saga_id, step, template, version); null: one made from the saga and the step."
        ),
    )
    mutex_scope: str | None = Field(
        default=None,
        max_length=400,
        description=(
            "Attempts with the same scope (placeholders as in idempotence_key) run one at a time, each with a "
            "fencing token; null: no mutex."
        ),
    )

    @field_validator("idempotence_key", "mutex_scope")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for path in placeholders(value):
            if path.split(".", 1)[0] not in KEY_ROOTS:
                raise ValueError(f"placeholder {{{path}}} must start with one of {', '.join(KEY_ROOTS)}")
        return value

    @field_validator("capability", "handler")
    @classmethod
    def _handler_steps_need_them(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind", "handler") == "handler":
            raise ValueError(f"a handler step needs a {info.field_name}")
        return value

    @model_validator(mode="after")
    def _kind_has_what_it_needs(self) -> StepSpec:
        if self.kind == "handler":
            if self.work_item is not None:
                raise ValueError(f"step {self.name!r}: work_item belongs to steps of kind work_item")
        else:
            if self.work_item is None:
                raise ValueError(f"step {self.name!r}: a work_item step needs work_item: {{type, title, offer, ...}}")
            if self.handler is not None:
                raise ValueError(f"step {self.name!r}: a work_item step has no handler")
            if self.mutex_scope is not None:
                raise ValueError(f"step {self.name!r}: mutex scopes guard handlers, not work items")
        if self.for_each is None and self.completion != CompletionPolicy():
            raise ValueError(f"step {self.name!r}: completion applies to fan-out steps (for_each)")
        if self.for_each is not None and self.mutex_scope is not None:
            raise ValueError(
                f"step {self.name!r}: a fan-out's members run in parallel; a mutex scope would serialize them"
            )
        if self.compensate is not None and self.compensate_work_item is not None:
            raise ValueError(f"step {self.name!r}: compensate with a handler or a work item, not both")
        if self.compensate is not None and self.capability is None:
            raise ValueError(f"step {self.name!r}: a compensation handler needs the step's capability")
        return self

    @property
    def compensable(self) -> bool:
        return self.compensate is not None or self.compensate_work_item is not None

    def item_for(self, phase: str) -> WorkItemStepSpec | None:
        """The work item a phase of this step waits on, if that phase is not a handler."""
        return self.work_item if phase == "forward" else self.compensate_work_item

    @property
    def compensation_policy(self) -> RetryPolicy:
        return self.compensate_retry or self.retry


class TemplateSpec(BaseModel):
    """A saga template: what a user writes in YAML and registers once per version."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, description="The template's name, as sagas name it.")
    version: str = Field(
        max_length=64,
        json_schema_extra={"pattern": SEMVER_PATTERN},
        description="Semantic version (MAJOR.MINOR.PATCH[-PRERELEASE], no +BUILD), immutable once registered.",
    )
    description: str = Field(default="", description="What the saga does.")
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (2020-12) a saga's input must satisfy; only local $refs, patterns in RE2 syntax.",
    )
    steps: list[StepSpec] = Field(
        min_length=1, max_length=200, description="The steps, run in this order; compensated in reverse."
    )
    deadline_ms: int | None = Field(
        default=None, ge=1, le=366 * 86_400_000, description="The whole saga's deadline: past it, it compensates."
    )
    sla: SlaSpec | None = Field(
        default=None,
        description="The whole saga's SLA, from its start: warning, breach action, escalation ladder.",
    )
    _input_validator: Any = PrivateAttr(default=None)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if "+" in value:
            raise ValueError(
                f"{value!r} carries build metadata (+...), which gives no precedence: two versions that differ "
                "only by it would tie; leave it out"
            )
        if not SEMVER.fullmatch(value):
            raise ValueError(f"{value!r} is not a semantic version such as 1.0.0")
        return value

    @field_validator("input_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_schema(value, "input_schema")
        except SchemaProblem as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _unique_step_names(self) -> TemplateSpec:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice")
            seen.add(step.name)
        return self

    def spec_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _validator(self) -> Any:
        # Built once per template object: templates are immutable and cached per process.
        if self._input_validator is None:
            self._input_validator = validator_for(self.input_schema)
        return self._input_validator

    def input_errors(self, data: Any) -> list[dict[str, str]]:
        """Every way ``data`` fails the input schema, as ``{path, message}``."""
        validator = self._validator()
        return [
            {
                "path": "input" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path),
                "message": e.message,
            }
            for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        ]
