"""``/api/v1/templates``: register and read saga templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from models.api import TemplateRead
from models.principal import Scope
from models.tables import TemplateRow
from models.template import TemplateSpec
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import NotFound
from orchestrator.sagas.templates import get_template, list_templates, register_template
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]


@router.post(
    "",
    status_code=201,
    response_model=TemplateRead,
    responses=responses(400, 401, 403, 409, 422),
    dependencies=[needs(Scope.templates_write)],
)
def create_template(spec: TemplateSpec, response: Response, wiring: WiringDep) -> TemplateRead:
    """Register a template version. Registering the same content again answers 200; other
    content under an existing version is a 409 (versions are immutable)."""
    stored, created = register_template(wiring.sessions, spec)
    if not created:
        response.status_code = 200
    with wiring.sessions() as session:
        row = session.get(TemplateRow, (stored.name, stored.version))
        assert row is not None
        return _read(row)


@router.get(
    "", response_model=list[TemplateRead], responses=responses(401, 403), dependencies=[needs(Scope.sagas_read)]
)
def all_templates(wiring: WiringDep) -> list[TemplateRead]:
    with wiring.sessions() as session:
        return [_read(r) for r in list_templates(session)]


@router.get(
    "/{name}", response_model=TemplateRead, responses=responses(401, 403, 404), dependencies=[needs(Scope.sagas_read)]
)
def latest_template(name: str, wiring: WiringDep) -> TemplateRead:
    """The highest registered version of a template."""
    return _get(wiring, name, None)


@router.get(
    "/{name}/{version}",
    response_model=TemplateRead,
    responses=responses(401, 403, 404),
    dependencies=[needs(Scope.sagas_read)],
)
def template_version(name: str, version: str, wiring: WiringDep) -> TemplateRead:
    return _get(wiring, name, version)


def _get(wiring: Wiring, name: str, version: str | None) -> TemplateRead:
    with wiring.sessions() as session:
        spec = get_template(session, name, version)
        row = session.get(TemplateRow, (spec.name, spec.version))
        if row is None:
            raise NotFound(f"no template {name!r}")
        return _read(row)


def _read(row: TemplateRow) -> TemplateRead:
    return TemplateRead(name=row.name, version=row.version, spec=row.spec, created_at=row.created_at)
