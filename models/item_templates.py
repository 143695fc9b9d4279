"""Work-item templates (the catalog): versioned blueprints of standard work, such as a PCI change or
a HIPAA export review, instantiated with typed parameters.

A template names a work-item type and holds an item blueprint: the fields of a work-item create
request, any string of which may hold ``{params.name}`` placeholders. It may ``extends`` another
template (it inherits its parameters, blueprint, inclusions, workflow and approval policy, and
overrides what it sets) and ``includes`` others (each is instantiated as a child item of this
one). A ``workflow`` starts a saga with the new item. Versions are SemVer; a version, once
registered, never changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from models.item_plans import SEMVER, SEMVER_PATTERN
from models.work_api import WorkItemRead

NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,99}$"
# "name" (its latest version when registered) or "name@1.2.3" (that version).
REF_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,99}(@[0-9A-Za-z.+-]{1,32})?$"
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_ITEMS = 50  # items one instantiation may create: the template's and its inclusions', nested

TemplateName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
TemplateRef = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME)]
# Pydantic checks a dict's key pattern but does not say so in the JSON Schema; the OpenAPI should.
_NAMED_PARAMS: dict[str, Any] = {"propertyNames": {"pattern": PARAM_NAME}}
ParamType = Literal["string", "integer", "number", "boolean", "date", "datetime", "timespan", "enum", "object", "array"]


class ParamSpec(BaseModel):
    """A typed parameter. ``timespan``: an object ``{"start", "end"}`` of aware datetimes, end after
    start (a change window). ``enum``: one of ``values``."""

    model_config = ConfigDict(extra="forbid")

    type: ParamType = Field(description="The value's type; see the schema's description for timespan and enum.")
    required: bool = Field(default=False, description="Must be given when instantiating (a default makes it optional).")
    default: Any = Field(default=None, description="The value when not given; checked against the type.")
    example: Any = Field(
        default=None, description="A value used to check the blueprint against the type's schema at registration."
    )
    description: str | None = Field(default=None, max_length=2000, description="What the parameter means.")
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=200, description="For type enum: the allowed values."
    )

    @model_validator(mode="after")
    def _enum_values(self) -> ParamSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum parameter needs its values")
        if self.type != "enum" and self.values is not None:
            raise ValueError("values belong to enum parameters only")
        return self


class IncludeSpec(BaseModel):
    """Another template instantiated as a child item of this one's, with its parameters given here
    (strings may hold this template's ``{params.name}`` placeholders)."""

    model_config = ConfigDict(extra="forbid")

    template: TemplateRef = Field(description='"name" (its latest version at registration) or "name@1.2.3".')
    parameters: dict[ParamName, Any] = Field(
        default_factory=dict,
        json_schema_extra=_NAMED_PARAMS,
        description="The included template's parameters by name; strings may use this template's {params.name}.",
    )


class WorkflowSpec(BaseModel):
    """A saga started with the new item: its template, and its input (strings may hold
    ``{params.name}`` and ``{item.id}`` placeholders)."""

    model_config = ConfigDict(extra="forbid")

    template: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The saga template to start (the tenant's own, else a shared one)."
    )
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="Its version; null: the highest registered."
    )
    input: dict[str, Any] = Field(
        default_factory=dict, description="The saga's input; strings may use {params.name} and {item.id}."
    )


class ItemTemplateCreate(BaseModel):
    """A work-item template to register. ``type`` and ``item`` may be left to the template it
    extends."""

    # A type, or a template to extend that has one (the OpenAPI says so; the validator below too).
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"anyOf": [{"required": ["type"]}, {"required": ["extends"]}]},
    )

    name: TemplateName = Field(description='A name such as "change:pci"; the template\'s id is tpl:<name>:<version>.')
    version: Annotated[str, StringConstraints(min_length=5, max_length=32, pattern=SEMVER_PATTERN)] = Field(
        description="SemVer: 1.2.0, or a pre-release such as 2.0.0-rc.1"
    )
    title: str | None = Field(default=None, max_length=200, description="What the catalog calls it.")
    type: str | None = Field(default=None, min_length=1, max_length=64, description="The work-item type it creates.")
    parameters: dict[ParamName, ParamSpec] = Field(
        default_factory=dict,
        max_length=100,
        json_schema_extra=_NAMED_PARAMS,
        description="Its typed parameters by name; the item uses them as {params.name}.",
    )
    item: dict[str, Any] = Field(
        default_factory=dict,
        description="The item blueprint: fields of POST /api/v1/work-items but type, tenant, parent_id and "
        "idempotence_key; strings may hold {params.name} placeholders.",
    )
    extends: TemplateRef | None = Field(default=None, description="The template this one inherits from.")
    includes: list[IncludeSpec] = Field(
        default_factory=list, max_length=20, description="Templates whose items are created as children of this one's."
    )
    workflow: WorkflowSpec | None = Field(default=None, description="A saga started with the new item; null: none.")
    approval_policy_id: str | None = Field(
        default=None, alias="approvalPolicyId", max_length=200, description="The policy gating its items."
    )
    documentation: str | None = Field(default=None, max_length=20_000, description="What the template is for.")
    migration_notes: str | None = Field(
        default=None, alias="migrationNotes", max_length=20_000, description="What changed since the last version."
    )

    @model_validator(mode="after")
    def _semver(self) -> ItemTemplateCreate:
        if SEMVER.fullmatch(self.version) is None:
            raise ValueError(f"version {self.version!r} is not SemVer (MAJOR.MINOR.PATCH[-PRERELEASE])")
        return self


class ItemTemplateRead(BaseModel):
    """A registered template: as given (``spec``), and as it applies with what it extends merged in."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str = Field(description="tpl:<name>:<version>")
    name: str = Field(description="The template's name.")
    version: str = Field(description="Its SemVer version.")
    tenant: str = Field(description="The tenant whose catalog holds it; * : shared with every tenant.")
    title: str | None = Field(description="What the catalog calls it; null: none given.")
    type: str = Field(description="The work-item type it creates.")
    approval_policy_id: str | None = Field(
        alias="approvalPolicyId", description="The policy gating its items; null: none."
    )
    parameters: dict[str, ParamSpec] = Field(description="Its parameters, its own and inherited, by name.")
    item: dict[str, Any] = Field(description="The item blueprint, with what it extends merged in.")
    extends: str | None = Field(description="The template it extends, as name@version; null: none.")
    includes: list[IncludeSpec] = Field(description="Inclusions, its own and inherited, as name@version.")
    workflow: WorkflowSpec | None = Field(description="The saga it starts with a new item; null: none.")
    documentation: str | None = Field(description="What it is for; null: none given.")
    migration_notes: str | None = Field(alias="migrationNotes", description="What changed in this version; null: none.")
    schema_checked: bool = Field(
        alias="schemaChecked",
        description="Whether registration checked the blueprint against the type's JSON Schema (it needs a "
        "default or example for every parameter the blueprint uses); the structure is always checked.",
    )
    created_by: str = Field(description="Who registered it.")
    created_at: datetime = Field(description="When.")


class InstantiateRequest(BaseModel):
    """Create the template's items (and start its workflow) with these parameters."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, StringConstraints(min_length=5, max_length=32)] | None = Field(
        default=None, description="Default: the latest version (pre-releases only when asked for by version)."
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="The template's parameters by name.")
    tenant: str | None = Field(default=None, min_length=1, max_length=64, description="Default: the token's.")
    parent_id: str | None = Field(default=None, max_length=96, description="An item the new one is part of.")
    idempotence_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A retry with the same key and parameters answers what the first did; other parameters: 409.",
    )
    due_at: AwareDatetime | None = Field(default=None, description="The new item's due time; null: none.")


class Instantiated(BaseModel):
    """What an instantiation created: the template's item first, then its inclusions' (children)."""

    template_id: str = Field(alias="templateId", description="The template instantiated: tpl:<name>:<version>.")
    created: bool = Field(description="False: a retry with the same idempotence key; the items are the first call's.")
    items: list[WorkItemRead] = Field(description="The template's item first, then its inclusions', depth first.")
    saga_id: str | None = Field(default=None, alias="sagaId", description="The workflow's saga, if it has one.")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
