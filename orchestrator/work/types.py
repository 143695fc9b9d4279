"""The work-item types registry: the built-in types plus those operators register, each
validated with its JSON Schema on create and update."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from jsonschema.exceptions import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agents import RiskLevel
from models.hitl import Hitl
from models.lifecycles import TYPE_LIFECYCLES
from models.policies import POLICY_FIELD
from models.principal import Principal
from models.schemas import SchemaProblem, check_schema, validator_for
from models.work_api import WorkItemTypeCreate
from models.work_item_types import BUILTIN_TYPES, RISK_ORDER, WorkItemType
from models.work_tables import WorkItemTypeRow
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.work.gates.policies import operators_live

_REQUIRED = re.compile(r"^'(.+)' is a required property$")


def get_type(session: Session, name: str) -> WorkItemType:
    builtin = BUILTIN_TYPES.get(name)
    if builtin is not None:
        return builtin
    row = session.get(WorkItemTypeRow, name)
    if row is None:
        known = sorted(BUILTIN_TYPES) + list(session.scalars(select(WorkItemTypeRow.name)))
        raise InvalidInput(
            f"unknown work-item type {name!r}",
            details=[{"path": "type", "message": f"not registered; known types: {', '.join(sorted(known))}"}],
        )
    return _from_row(row)


def list_types(session: Session) -> list[WorkItemType]:
    rows = session.scalars(select(WorkItemTypeRow).order_by(WorkItemTypeRow.name))
    return list(BUILTIN_TYPES.values()) + [_from_row(r) for r in rows]


def register_type(session: Session, body: WorkItemTypeCreate, principal: Principal) -> tuple[WorkItemType, bool]:
    """Register a type; the same definition again is a no-op (False), another one a 409."""
    if body.name in BUILTIN_TYPES:
        raise Conflict(f"{body.name!r} is a built-in type and cannot be redefined")
    # The request model holds it to these already; kept for callers that build the model by hand.
    choosable = TYPE_LIFECYCLES
    if body.lifecycle not in choosable:
        raise InvalidInput(
            f"unknown lifecycle {body.lifecycle!r}",
            details=[{"path": "lifecycle", "message": f"known: {', '.join(choosable)}"}],
        )
    try:
        check_schema(body.json_schema, "schema")
    except SchemaProblem as exc:
        raise InvalidInput(
            f"schema is not a valid JSON Schema for workyard: {exc.path}: {exc.message}",
            details=[{"path": exc.path, "message": exc.message}],
        ) from exc
    policy = body.approval_policy_id
    if policy is not None and not operators_live(session, policy):
        # Types are every tenant's: the policy gating one must be there for every tenant.
        raise InvalidInput(
            f"no operator's policy {policy!r}: register it first with an all-tenant token (POST /api/v1/policies)",
            details=[{"path": "approvalPolicyId", "message": f"no policy {policy!r} of tenant *"}],
        )
    hitl = body.hitl.model_dump(mode="json") if body.hitl is not None and body.hitl.required else None
    existing = session.get(WorkItemTypeRow, body.name)
    if existing is None:
        session.add(
            WorkItemTypeRow(
                name=body.name,
                description=body.description,
                json_schema=body.json_schema,
                lifecycle=body.lifecycle,
                capabilities=body.capabilities,
                risk_level=body.risk_level.value,
                approval_policy_id=policy,
                hitl=hitl,
                created_by=principal.ref,
            )
        )
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            existing = session.get(WorkItemTypeRow, body.name)
            if existing is None:
                raise
        else:
            return get_type(session, body.name), True
    same = (
        existing.json_schema,
        existing.lifecycle,
        existing.description,
        existing.capabilities,
        existing.risk_level,
        existing.approval_policy_id,
        existing.hitl,
    ) == (
        body.json_schema,
        body.lifecycle,
        body.description,
        body.capabilities,
        body.risk_level.value,
        policy,
        hitl,
    )
    if not same:
        raise Conflict(f"type {body.name!r} is already registered with another definition; types are immutable")
    return _from_row(existing), False


def validate_item(item_type: WorkItemType, document: dict[str, Any], *, only_missing: bool = False) -> None:
    """Raise InvalidInput listing every field that breaks the type's schema. With
    ``only_missing``, only absent required fields count (a template's values are still
    placeholders, so their types cannot be judged yet)."""
    validator = _validator(json.dumps(item_type.schema, sort_keys=True))
    problems = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if only_missing:
        problems = [p for p in problems if p.validator in ("required", "anyOf", "oneOf")]
    if not problems:
        return
    details = [_detail(e) for e in problems]
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details)
    raise InvalidInput(f"not a valid {item_type.name}: {summary}", details=details)


def _detail(error: ValidationError) -> dict[str, str]:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        # Name the missing field itself, not the object that lacks it (one error per field).
        match = _REQUIRED.match(error.message)
        if match:
            return {"path": ".".join([*path, match.group(1)]), "message": "is required"}
    if error.validator in ("anyOf", "oneOf") and error.context:
        # Name each alternative by the field it wants (a missing one, or one that is wrong).
        options: list[str] = []
        for sub in error.context:
            match = _REQUIRED.match(sub.message) if sub.validator == "required" else None
            option = ".".join([*map(str, sub.absolute_path), match.group(1)] if match else map(str, sub.absolute_path))
            if option and option not in options:
                options.append(option)
        wanted = " or ".join(options) if options else error.message
        return {"path": ".".join(path) or "(root)", "message": f"needs {wanted}"}
    return {"path": ".".join(path) or "(root)", "message": error.message}


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    return validator_for(json.loads(schema_json))


def types_of(session: Session, names: Iterable[str]) -> dict[str, WorkItemType]:
    """The types of these names that exist, built in or registered, in one query at most."""
    wanted = set(names)
    found = {n: BUILTIN_TYPES[n] for n in wanted if n in BUILTIN_TYPES}
    others = sorted(wanted - set(found))
    if others:
        found.update(
            (r.name, _from_row(r))
            for r in session.scalars(select(WorkItemTypeRow).where(WorkItemTypeRow.name.in_(others)))
        )
    return found


def _from_row(row: WorkItemTypeRow) -> WorkItemType:
    return WorkItemType(
        row.name,
        row.description,
        row.json_schema,
        row.lifecycle,
        builtin=False,
        capabilities=tuple(row.capabilities),
        risk_level=RiskLevel(row.risk_level),
        approval_policy_id=row.approval_policy_id,
        hitl=Hitl.model_validate(row.hitl) if row.hitl else None,
    )


def check_risk(item_type: WorkItemType, risk_level: RiskLevel | None) -> None:
    """An item may raise its type's risk level, never lower it: the type's is the least its
    items are routed with."""
    if risk_level is not None and RISK_ORDER.index(risk_level) < RISK_ORDER.index(item_type.risk_level):
        raise InvalidInput(
            f"risk_level {risk_level.value} is below its type's ({item_type.name}: {item_type.risk_level.value}); "
            "an item may raise its type's risk level, never lower it",
            details=[{"path": "risk_level", "message": f"at least {item_type.risk_level.value} for {item_type.name}"}],
        )


def check_policy(item_type: WorkItemType, payload: Any) -> None:
    """An item of a type gated by a policy names that policy or none (its type's gates it then): it
    may not swap it for another."""
    gating = item_type.approval_policy_id
    named = payload.get(POLICY_FIELD) if isinstance(payload, dict) else None
    if gating is not None and named is not None and named != gating:
        raise InvalidInput(
            f"items of type {item_type.name} are gated by policy {gating!r}; an item may not name another",
            details=[{"path": f"payload.{POLICY_FIELD}", "message": f"{gating!r} or none"}],
        )
