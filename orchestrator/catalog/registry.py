"""Registering and finding work-item templates.

A tenant's templates are its own; an operator's (an all-tenant token's) are shared with every
tenant, as saga templates are: a name is looked up in the tenant's own catalog first. A version,
once registered, never changes: the same definition again is a no-op, another one a 409.

Registration checks what can be checked before any parameter is known: the type is registered,
what it extends and includes exists (its name resolved to an exact version, kept in the
template), every placeholder names a declared parameter, the blueprint rendered with sample
values is a valid work-item request, and, where every parameter it uses has a default or an
example, a valid item of its type (its JSON Schema). Instantiation checks the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.item_templates import (
    MAX_ITEMS,
    IncludeSpec,
    ItemTemplateCreate,
    ItemTemplateRead,
    ParamSpec,
    WorkflowSpec,
)
from models.keytemplate import KeyTemplateError, all_placeholders, render_value
from models.policies import POLICY_FIELD
from models.principal import ALL_TENANTS, Principal, Scope
from models.template import semver_key
from models.work_api import WorkItemCreate
from models.work_item_types import PARENT_TYPES
from models.work_tables import ItemTemplateRow
from orchestrator.catalog.params import check_spec, sample
from orchestrator.errors import Conflict, InvalidInput, NotFound
from orchestrator.sagas.templates import get_template
from orchestrator.work.access import require
from orchestrator.work.gates import policies
from orchestrator.work.items import schema_document
from orchestrator.work.types import get_type, validate_item

# Fields of a work-item request the instantiation sets, not the blueprint.
SET_BY_INSTANTIATION = ("type", "tenant", "parent_id", "idempotence_key", "templates_applied", "templatesApplied")


def register(session: Session, principal: Principal, body: ItemTemplateCreate) -> tuple[ItemTemplateRead, bool]:
    """Register a template version for the principal's tenant (an all-tenant token: shared)."""
    require(principal, Scope.templates_write)
    owner = ALL_TENANTS if principal.all_tenants else principal.tenant
    spec = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = _digest(spec)
    existing = session.get(ItemTemplateRow, (owner, body.name, body.version))
    if existing is not None:
        return _same_or_conflict(existing, digest)
    parent = _resolve(session, owner, body.extends, "extends") if body.extends else None
    effective = _merged(parent, body, spec)
    if parent is not None:
        spec["extends"] = f"{parent.name}@{parent.version}"
    spec["includes"] = effective["includes"][len(parent.effective["includes"]) if parent else 0 :]
    checked = _check(session, owner, effective)
    row = ItemTemplateRow(
        tenant=owner,
        name=body.name,
        version=body.version,
        type=effective["type"],
        spec=spec,
        effective=effective,
        digest=digest,
        schema_checked=checked,
        created_by=principal.ref,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # The same version registered at the same moment: answer as if it came first.
        found = session.get(ItemTemplateRow, (owner, body.name, body.version))
        if found is None:
            raise
        return _same_or_conflict(found, digest)
    return view(row), True


def find(session: Session, tenant: str, name: str, version: str | None = None) -> ItemTemplateRow:
    """The template ``name`` as ``tenant`` sees it (its own, else the shared one): ``version``, or
    the highest release (a pre-release only when asked for by version)."""
    for owner in _owners(tenant):
        rows = list(
            session.scalars(
                select(ItemTemplateRow).where(ItemTemplateRow.tenant == owner, ItemTemplateRow.name == name)
            )
        )
        if not rows:
            continue
        if version is not None:
            for row in rows:
                if row.version == version:
                    return row
            known = ", ".join(sorted((r.version for r in rows), key=semver_key))
            raise NotFound(f"template {name!r} has no version {version} (it has {known})")
        releases = [r for r in rows if "-" not in r.version] or rows
        return max(releases, key=lambda r: semver_key(r.version))
    raise NotFound(f"no work-item template named {name!r}")


def versions(session: Session, tenant: str, name: str) -> list[ItemTemplateRead]:
    """Every version of ``name`` as ``tenant`` sees it, oldest first."""
    for owner in _owners(tenant):
        rows = list(
            session.scalars(
                select(ItemTemplateRow).where(ItemTemplateRow.tenant == owner, ItemTemplateRow.name == name)
            )
        )
        if rows:
            return [view(r) for r in sorted(rows, key=lambda r: semver_key(r.version))]
    raise NotFound(f"no work-item template named {name!r}")


def catalog(session: Session, tenant: str) -> list[ItemTemplateRead]:
    """The latest version of each template ``tenant`` can instantiate (its own hide shared ones of
    the same name), by name. An all-tenant caller sees the shared catalog."""
    latest: dict[str, ItemTemplateRow] = {}
    for owner in reversed(_owners(tenant)):  # shared first, the tenant's own replace them
        mine: dict[str, ItemTemplateRow] = {}
        for row in session.scalars(select(ItemTemplateRow).where(ItemTemplateRow.tenant == owner)):
            best = mine.get(row.name)
            if best is None or _release_key(row) > _release_key(best):
                mine[row.name] = row
        latest.update(mine)
    return [view(latest[name]) for name in sorted(latest)]


def view(row: ItemTemplateRow) -> ItemTemplateRead:
    effective = row.effective
    return ItemTemplateRead(
        id=f"tpl:{row.name}:{row.version}",
        name=row.name,
        version=row.version,
        tenant=row.tenant,
        title=effective.get("title"),
        type=row.type,
        approval_policy_id=effective.get("approvalPolicyId"),
        parameters={k: ParamSpec.model_validate(v) for k, v in effective["parameters"].items()},
        item=effective["item"],
        extends=row.spec.get("extends"),
        includes=[IncludeSpec.model_validate(i) for i in effective["includes"]],
        workflow=WorkflowSpec.model_validate(effective["workflow"]) if effective.get("workflow") else None,
        documentation=effective.get("documentation"),
        migration_notes=row.spec.get("migrationNotes"),
        schema_checked=row.schema_checked,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _owners(tenant: str) -> list[str]:
    return [ALL_TENANTS] if tenant == ALL_TENANTS else [tenant, ALL_TENANTS]


def _release_key(row: ItemTemplateRow) -> tuple[bool, tuple[Any, ...]]:
    return "-" not in row.version, semver_key(row.version)


def _resolve(session: Session, owner: str, ref: str, path: str) -> ItemTemplateRow:
    name, _, version = ref.partition("@")
    try:
        return find(session, owner, name, version or None)
    except NotFound as exc:
        raise InvalidInput(exc.message, details=[{"path": path, "message": exc.message}]) from exc


def _merged(parent: ItemTemplateRow | None, body: ItemTemplateCreate, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The template as it applies: what it extends, overridden by what it sets (parameters by
    name, the blueprint field by field with objects merged and labels joined; inclusions added)."""
    base: dict[str, Any] = dict(parent.effective) if parent is not None else {}
    if parent is not None and body.type is not None and body.type != parent.type:
        message = f"extends {parent.name}@{parent.version}, which creates {parent.type!r} items"
        raise InvalidInput(f"type {body.type!r}: {message}", details=[{"path": "type", "message": message}])
    item_type = body.type or base.get("type")
    if item_type is None:
        raise InvalidInput(
            "type is required (or extend a template that has one)", details=[{"path": "type", "message": "required"}]
        )
    return {
        "type": item_type,
        "title": spec.get("title", base.get("title")),
        "parameters": {**base.get("parameters", {}), **spec.get("parameters", {})},
        "item": _merge_item(base.get("item", {}), spec.get("item", {})),
        "includes": [*base.get("includes", []), *spec.get("includes", [])],
        "workflow": spec.get("workflow", base.get("workflow")),
        "approvalPolicyId": spec.get("approvalPolicyId", base.get("approvalPolicyId")),
        "documentation": spec.get("documentation", base.get("documentation")),
    }


def _merge_item(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in own.items():
        if key == "labels" and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_item(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check(session: Session, owner: str, effective: dict[str, Any]) -> bool:
    """Everything registration can check (see the module); True when the blueprint was checked
    against the type's JSON Schema too. Resolves each inclusion to an exact version, in place."""
    problems: list[dict[str, str]] = []
    params = {name: ParamSpec.model_validate(spec) for name, spec in effective["parameters"].items()}
    for name, spec in params.items():
        problems += check_spec(name, spec)
    declared = {f"params.{name}" for name in params}
    item = effective["item"]
    for key in SET_BY_INSTANTIATION:
        if key in item:
            problems.append({"path": f"item.{key}", "message": "set when the template is instantiated, not here"})
    problems += _unknown_placeholders(item, declared, "item")
    policy = effective.get("approvalPolicyId")
    if policy is not None:
        problems += _policy_problems(session, owner, policy, item)
    workflow = effective.get("workflow")
    if workflow is not None:
        problems += _unknown_placeholders(workflow.get("input", {}), declared | {"item.id"}, "workflow.input")
        try:
            get_template(session, workflow["template"], workflow.get("version"), tenant=owner)
        except NotFound as exc:
            problems.append({"path": "workflow.template", "message": exc.message})
    count = 1
    for n, include in enumerate(effective["includes"]):
        problems += _unknown_placeholders(include.get("parameters", {}), declared, f"includes[{n}].parameters")
        try:
            included = _resolve(session, owner, include["template"], f"includes[{n}].template")
        except InvalidInput as exc:
            problems += exc.details or []
            continue
        include["template"] = f"{included.name}@{included.version}"
        takes = PARENT_TYPES.get(included.type)
        if takes is not None and effective["type"] not in takes:
            what = " or ".join(sorted(takes)) or "no parent"
            message = f"creates {included.type} items, which take {what} as parent, not {effective['type']}"
            problems.append({"path": f"includes[{n}].template", "message": message})
        count += _items_in(session, owner, included)
        problems += _include_problems(included, include.get("parameters", {}), f"includes[{n}].parameters")
    if count > MAX_ITEMS:
        problems.append({"path": "includes", "message": f"would create {count} items; at most {MAX_ITEMS}"})
    item_type = get_type(session, effective["type"])  # an unknown type: a 422 naming "type"
    gating = item_type.approval_policy_id
    if gating is not None:
        message = f"{item_type.name} items are gated by policy {gating!r}; a template may name only that one"
        if policy is not None and policy != gating:
            problems.append({"path": "approvalPolicyId", "message": message})
        named = (item.get("payload") or {}).get(POLICY_FIELD)
        if isinstance(named, str) and named != gating and not all_placeholders(named):
            problems.append({"path": f"item.payload.{POLICY_FIELD}", "message": message})
    schema_checked = False
    if not problems:
        samples = {name: sample(spec) for name, spec in params.items()}
        values = {"params": {name: value for name, (value, _) in samples.items()}}
        try:
            rendered = with_policy(render_value(item, values), policy)
            request = WorkItemCreate.model_validate({**rendered, "type": effective["type"]})
        except KeyTemplateError as exc:
            # An object, array or timespan parameter inside a longer string: it has no text form.
            problems.append({"path": "item", "message": str(exc)})
        except ValidationError as exc:
            problems += field_problems(exc, "item")
        else:
            used = {p.removeprefix("params.") for p in all_placeholders(item)}
            if all(samples[name][1] for name in used):
                try:
                    validate_item(item_type, schema_document(request.model_dump(mode="json", exclude_none=True)))
                except InvalidInput as exc:
                    problems += [{**d, "path": f"item.{d['path']}"} for d in exc.details or []]
                schema_checked = True
    if problems:
        raise InvalidInput(
            "the template is not valid: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems),
            details=problems,
        )
    return schema_checked


def _policy_problems(session: Session, owner: str, policy: str, item: Mapping[str, Any]) -> list[dict[str, str]]:
    """The policy must be one the template's tenant can use (its own or a shared one), and the item
    may not name another: the gate reads the item's payload, where instantiation puts this one."""
    problems = []
    if policies.live_for(session, owner, policy) is None:
        problems.append({"path": "approvalPolicyId", "message": f"no policy {policy!r} (register it first)"})
    named = (item.get("payload") or {}).get(POLICY_FIELD)
    if named is not None and named != policy:
        message = f"names policy {named!r}, the template {policy!r}"
        problems.append({"path": f"item.payload.{POLICY_FIELD}", "message": message})
    return problems


def field_problems(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    """A request model's validation errors as problems naming their fields under ``prefix``."""
    return [{"path": ".".join([prefix, *(str(p) for p in e["loc"])]), "message": e["msg"]} for e in exc.errors()]


def with_policy(item: dict[str, Any], policy: str | None) -> dict[str, Any]:
    """The rendered item with the template's approval policy in its payload, where gates read it."""
    if policy is None:
        return item
    return {**item, "payload": {**(item.get("payload") or {}), POLICY_FIELD: policy}}


def _include_problems(included: ItemTemplateRow, given: Mapping[str, Any], path: str) -> list[dict[str, str]]:
    specs = included.effective["parameters"]
    problems = [
        {"path": f"{path}.{name}", "message": f"not a parameter of {included.name}@{included.version}"}
        for name in given
        if name not in specs
    ]
    for name, raw in specs.items():
        spec = ParamSpec.model_validate(raw)
        if spec.required and spec.default is None and name not in given:
            problems.append({"path": f"{path}.{name}", "message": f"required by {included.name}@{included.version}"})
    return problems


def _items_in(session: Session, owner: str, row: ItemTemplateRow) -> int:
    """How many items instantiating ``row`` creates (its inclusions were resolved when it was registered)."""
    total = 1
    for include in row.effective["includes"]:
        total += _items_in(session, owner, _resolve(session, owner, include["template"], "includes"))
    return total


def _unknown_placeholders(value: Any, declared: set[str], path: str) -> list[dict[str, str]]:
    unknown = sorted(set(all_placeholders(value)) - declared)
    return [
        {"path": path, "message": f"{{{name}}} names no declared parameter (use {{params.<name>}})"} for name in unknown
    ]


def _same_or_conflict(row: ItemTemplateRow, digest: str) -> tuple[ItemTemplateRead, bool]:
    if row.digest == digest:
        return view(row), False
    raise Conflict(
        f"template {row.name} {row.version} is registered with another definition; versions never change: "
        "register a new version",
        details=[{"path": "version", "message": f"{row.version} exists"}],
    )


def _digest(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
