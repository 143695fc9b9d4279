"""Registering and looking up saga templates (immutable per version), per tenant.

A template belongs to a tenant, or is shared (tenant ``*``): published by an operator, runnable
by every tenant, extended with versions by nobody else. A tenant's saga runs the tenant's own
template of that name if it has one, else the shared one; so another tenant can never put a
version in its way. A template's work items open in the tenant of the saga that runs it: a
template that names another tenant for them is refused.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.principal import ALL_TENANTS
from models.problems import error_details, summary
from models.tables import SagaRun, TemplateRow
from models.template import TemplateSpec, semver_key
from orchestrator.errors import Conflict, InvalidInput, NotFound
from orchestrator.storage.db import SessionFactory
from orchestrator.work.items import offer_scope_problem
from orchestrator.work.tokens import unknown_groups
from orchestrator.work.types import get_type, validate_item

SHARED = ALL_TENANTS

# Versions are immutable, so a parsed template can be cached for the life of the process, by
# (owner, name, version).
_CACHE: dict[tuple[str, str, str], TemplateSpec] = {}
# "Latest version" is looked up again after this long, so another process's new version shows
# up within it; a version registered through this process shows up at once.
LATEST_TTL_S = 2.0
_LATEST: dict[tuple[str, str], tuple[str, float]] = {}
# Whose template of a name a tenant runs, once found: it cannot change (a tenant cannot add a
# name that is shared, and its own name, once there, comes first).
_OWNER: dict[tuple[int, str, str], str] = {}


def parse_template(data: Any) -> TemplateSpec:
    """Validate a template document; every problem is reported with its field path."""
    if not isinstance(data, dict):
        raise InvalidInput("a template must be a mapping with name, version and steps")
    try:
        return TemplateSpec.model_validate(data)
    except ValidationError as exc:
        details = error_details(exc.errors())
        raise InvalidInput("template is not valid: " + summary(details), details=details) from exc


def _check_item_types(session: Session, spec: TemplateSpec) -> None:
    """Every work item a template would open names a registered type."""
    problems = []
    for index, step in enumerate(spec.steps):
        for field in ("work_item", "compensate_work_item"):
            item = getattr(step, field)
            if item is None:
                continue
            try:
                item_type = get_type(session, item.type)
            except InvalidInput as exc:
                problems.append({"path": f"steps.{index}.{field}.type", "message": exc.message})
                continue
            if item.sla is not None:
                for group in unknown_groups(session, item.sla.groups()):
                    problems.append(
                        {
                            "path": f"steps.{index}.{field}.sla",
                            "message": f"escalates to group {group!r}, which no principal is in",
                        }
                    )
            document = {k: v for k, v in item.model_dump(include={"title", "description", "payload"}).items() if v}
            try:
                validate_item(item_type, document, only_missing=True)
            except InvalidInput as exc:
                problems += [{**d, "path": f"steps.{index}.{field}.{d['path']}"} for d in exc.details]
    if spec.sla is not None:
        for group in unknown_groups(session, spec.sla.groups()):
            problems.append({"path": "sla", "message": f"escalates to group {group!r}, which no principal is in"})
    if problems:
        raise InvalidInput("template is not valid: " + summary(problems), details=problems)


def _check_item_tenants(spec: TemplateSpec, tenant: str) -> None:
    """A template's work items open in its saga's tenant: naming any other is refused."""
    problems = []
    for index, step in enumerate(spec.steps):
        for field in ("work_item", "compensate_work_item"):
            item = getattr(step, field)
            if item is None or item.tenant is None or item.tenant == tenant != SHARED:
                continue
            why = (
                "a shared template's work items open in the tenant of the saga that runs it: leave tenant out"
                if tenant == SHARED
                else f"a template of tenant {tenant!r} opens work items in {tenant!r} only"
            )
            problems.append({"path": f"steps.{index}.{field}.tenant", "message": f"names {item.tenant!r}; {why}"})
    for index, step in enumerate(spec.steps):
        for field in ("work_item", "compensate_work_item"):
            item = getattr(step, field)
            if item is not None and (problem := offer_scope_problem(item.offer)) is not None:
                problems.append({"path": f"steps.{index}.{field}.offer.scope", "message": problem})
    if problems:
        raise InvalidInput("template is not valid: " + summary(problems), details=problems)


def register_template(
    sessions: SessionFactory, spec: TemplateSpec, *, tenant: str = SHARED
) -> tuple[TemplateSpec, bool]:
    """Store ``spec`` as ``tenant``'s (``*``: shared); returns (template, created). The same
    version with other content is a 409, and so is a tenant's version of a shared template."""
    digest = spec.spec_hash()
    _check_item_tenants(spec, tenant)
    try:
        with sessions.begin() as session:
            if tenant != SHARED and _versions(session, SHARED, spec.name):
                raise Conflict(
                    f"template {spec.name!r} is a shared template: every tenant may run it, none may add "
                    "versions to it; register yours under another name"
                )
            existing = session.get(TemplateRow, (tenant, spec.name, spec.version))
            if existing is not None:
                if existing.spec_hash != digest:
                    raise Conflict(
                        f"template {spec.name} {spec.version} is already registered with other "
                        "content; versions are immutable, register a new version"
                    )
                return TemplateSpec.model_validate(existing.spec), False
            _check_item_types(session, spec)
            _LATEST.pop((tenant, spec.name), None)
            session.add(
                TemplateRow(
                    tenant=tenant,
                    name=spec.name,
                    version=spec.version,
                    spec=spec.model_dump(mode="json"),
                    spec_hash=digest,
                )
            )
    except IntegrityError:
        # Registered concurrently by someone else: answer as if we had come second.
        return register_template(sessions, spec, tenant=tenant)
    return spec, True


def _versions(session: Session, owner: str, name: str) -> list[str]:
    return list(
        session.scalars(select(TemplateRow.version).where(TemplateRow.tenant == owner, TemplateRow.name == name))
    )


def owner_of(session: Session, tenant: str, name: str) -> str | None:
    """Whose template ``name`` a saga of ``tenant`` runs: the tenant's own if it has one, else the
    shared one; None if neither exists."""
    key = (id(session.get_bind()), tenant, name)  # per database: a process may hold several
    owner = _OWNER.get(key)
    if owner is not None:
        return owner
    for candidate in (tenant, SHARED) if tenant != SHARED else (SHARED,):
        if _versions(session, candidate, name):
            _OWNER[key] = candidate
            return candidate
    return None


def get_template(session: Session, name: str, version: str | None = None, *, tenant: str = SHARED) -> TemplateSpec:
    """The template ``name`` a saga of ``tenant`` runs (its own, else the shared one), by version;
    without a version, the highest registered one."""
    owner = owner_of(session, tenant, name)
    if owner is None:
        raise NotFound(f"no template named {name!r}")
    if version is not None:
        cached = _CACHE.get((owner, name, version))
        if cached is not None:
            return cached
        row = session.get(TemplateRow, (owner, name, version))
        if row is None:
            known = _versions(session, owner, name)
            raise NotFound(
                f"template {name!r} has no version {version!r}; registered: " + ", ".join(sorted(known, key=semver_key))
            )
        spec = TemplateSpec.model_validate(row.spec)
        _CACHE[(owner, name, version)] = spec
        return spec
    cached_latest = _LATEST.get((owner, name))
    if cached_latest is not None and time.monotonic() - cached_latest[1] < LATEST_TTL_S:
        return get_template(session, name, cached_latest[0], tenant=tenant)
    latest = max(_versions(session, owner, name), key=semver_key)
    _LATEST[(owner, name)] = (latest, time.monotonic())
    return get_template(session, name, latest, tenant=tenant)


def template_of(session: Session, saga: SagaRun) -> TemplateSpec:
    """The template version a saga runs."""
    return get_template(session, saga.template_name, saga.template_version, tenant=saga.tenant)


def list_templates(session: Session, *, tenant: str = SHARED) -> list[TemplateRow]:
    """The templates a tenant may run (its own and the shared ones); every one for ``*``."""
    query = select(TemplateRow).order_by(TemplateRow.name, TemplateRow.tenant, TemplateRow.created_at)
    if tenant != SHARED:
        query = query.where(TemplateRow.tenant.in_([tenant, SHARED]))
    return list(session.scalars(query))
