"""``/api/v1/templates``: register and read saga templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from models.api import TemplateRead
from models.principal import Principal, Scope
from models.tables import TemplateRow
from models.template import TemplateSpec
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import NotFound
from orchestrator.sagas.templates import get_template, list_templates, owner_of, register_template
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
NamePath = Annotated[str, Path(description="The template's name.")]


@router.post(
    "",
    status_code=201,
    response_model=TemplateRead,
    responses={
        200: {"model": TemplateRead, "description": "The same version with the same content, registered before"},
        **responses(400, 401, 403, 409, 422),
    },
)
def create_template(
    spec: TemplateSpec,
    response: Response,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.templates_write)],
) -> TemplateRead:
    """Register a template version as the token's tenant's own (an all-tenant token publishes a
    shared one, which every tenant may run). Registering the same content again answers 200;
    other content under an existing version, or a version of a shared template, is a 409."""
    stored, created = register_template(wiring.sessions, spec, tenant=principal.tenant)
    if not created:
        response.status_code = 200
    with wiring.sessions() as session:
        row = session.get(TemplateRow, (principal.tenant, stored.name, stored.version))
        assert row is not None
        return _read(row)


ReaderDep = Annotated[Principal, needs(Scope.sagas_read)]


@router.get("", response_model=list[TemplateRead], responses=responses(401, 403))
def all_templates(wiring: WiringDep, principal: ReaderDep) -> list[TemplateRead]:
    """The templates the token's tenant may run: its own and the shared ones."""
    with wiring.sessions() as session:
        return [_read(r) for r in list_templates(session, tenant=principal.tenant)]


@router.get("/{name}", response_model=TemplateRead, responses=responses(401, 403, 404))
def latest_template(name: NamePath, wiring: WiringDep, principal: ReaderDep) -> TemplateRead:
    """The highest version of the template a saga of the token's tenant would run."""
    return _get(wiring, principal, name, None)


@router.get("/{name}/{version}", response_model=TemplateRead, responses=responses(401, 403, 404))
def template_version(
    name: NamePath,
    version: Annotated[str, Path(description="The semantic version, e.g. 1.2.0.")],
    wiring: WiringDep,
    principal: ReaderDep,
) -> TemplateRead:
    """One version of a template the token's tenant may run: its own, else the shared one."""
    return _get(wiring, principal, name, version)


def _get(wiring: Wiring, principal: Principal, name: str, version: str | None) -> TemplateRead:
    with wiring.sessions() as session:
        spec = get_template(session, name, version, tenant=principal.tenant)
        owner = owner_of(session, principal.tenant, name)
        row = session.get(TemplateRow, (owner, spec.name, spec.version)) if owner is not None else None
        if row is None:
            raise NotFound(f"no template {name!r}")
        return _read(row)


def _read(row: TemplateRow) -> TemplateRead:
    return TemplateRead(tenant=row.tenant, name=row.name, version=row.version, spec=row.spec, created_at=row.created_at)
