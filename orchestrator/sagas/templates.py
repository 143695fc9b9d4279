"""Registering and looking up saga templates (immutable per version)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.problems import error_details, summary
from models.tables import TemplateRow
from models.template import TemplateSpec, semver_key
from orchestrator.errors import Conflict, InvalidInput, NotFound
from orchestrator.storage.db import SessionFactory
from orchestrator.work.tokens import unknown_groups
from orchestrator.work.types import get_type, validate_item

# Versions are immutable, so a parsed template can be cached for the life of the process.
_CACHE: dict[tuple[str, str], TemplateSpec] = {}
# "Latest version" is looked up again after this long, so another process's new version shows
# up within it; a version registered through this process shows up at once.
LATEST_TTL_S = 2.0
_LATEST: dict[str, tuple[str, float]] = {}


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


def register_template(sessions: SessionFactory, spec: TemplateSpec) -> tuple[TemplateSpec, bool]:
    """Store ``spec``; returns (template, created). The same version with other content is a 409."""
    digest = spec.spec_hash()
    try:
        with sessions.begin() as session:
            existing = session.get(TemplateRow, (spec.name, spec.version))
            if existing is not None:
                if existing.spec_hash != digest:
                    raise Conflict(
                        f"template {spec.name} {spec.version} is already registered with other "
                        "content; versions are immutable, register a new version"
                    )
                return TemplateSpec.model_validate(existing.spec), False
            _check_item_types(session, spec)
            _LATEST.pop(spec.name, None)
            session.add(
                TemplateRow(name=spec.name, version=spec.version, spec=spec.model_dump(mode="json"), spec_hash=digest)
            )
    except IntegrityError:
        # Registered concurrently by someone else: answer as if we had come second.
        return register_template(sessions, spec)
    return spec, True


def get_template(session: Session, name: str, version: str | None = None) -> TemplateSpec:
    """A template by name and version; without a version, the highest registered one."""
    if version is not None:
        cached = _CACHE.get((name, version))
        if cached is not None:
            return cached
        row = session.get(TemplateRow, (name, version))
        if row is None:
            known = session.scalars(select(TemplateRow.version).where(TemplateRow.name == name)).all()
            if not known:
                raise NotFound(f"no template named {name!r}")
            raise NotFound(
                f"template {name!r} has no version {version!r}; registered: " + ", ".join(sorted(known, key=semver_key))
            )
        spec = TemplateSpec.model_validate(row.spec)
        _CACHE[(name, version)] = spec
        return spec
    cached_latest = _LATEST.get(name)
    if cached_latest is not None and time.monotonic() - cached_latest[1] < LATEST_TTL_S:
        return get_template(session, name, cached_latest[0])
    versions = session.scalars(select(TemplateRow.version).where(TemplateRow.name == name)).all()
    if not versions:
        raise NotFound(f"no template named {name!r}")
    latest = max(versions, key=semver_key)
    _LATEST[name] = (latest, time.monotonic())
    return get_template(session, name, latest)


def list_templates(session: Session) -> list[TemplateRow]:
    return list(session.scalars(select(TemplateRow).order_by(TemplateRow.name, TemplateRow.created_at)))
