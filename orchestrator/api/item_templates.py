"""``/api/v1/work-item-templates``: the catalog of work-item templates, and instantiating one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from models.item_templates import Instantiated, InstantiateRequest, ItemTemplateCreate, ItemTemplateRead
from models.principal import Principal, Scope
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.catalog import registry
from orchestrator.catalog.instantiate import instantiate
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/api/v1/work-item-templates", tags=["work-item templates"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
NamePath = Annotated[str, Path(description='The template\'s name, such as "change:pci".', max_length=100)]


@router.post(
    "",
    status_code=201,
    response_model=ItemTemplateRead,
    responses={
        200: {"model": ItemTemplateRead, "description": "The same version with the same content, registered before"},
        **responses(401, 403, 409, 422),
    },
)
def create_item_template(
    body: ItemTemplateCreate,
    response: Response,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.templates_write)],
) -> ItemTemplateRead:
    """Register a template version in the token's tenant's catalog (an all-tenant token's is shared
    with every tenant). It is checked against the type registry and what it extends and includes
    (a 422 names each problem). The same content again answers 200; other content under a
    registered version is a 409: versions never change."""
    with wiring.sessions.begin() as session:
        read, created = registry.register(session, principal, body)
    if not created:
        response.status_code = 200
    return read


@router.get("", response_model=list[ItemTemplateRead], responses=responses(401, 403))
def item_template_catalog(
    wiring: WiringDep, principal: Annotated[Principal, needs(Scope.work_read)]
) -> list[ItemTemplateRead]:
    """The catalog: the latest release of each template the tenant can instantiate, by name (its own
    templates hide shared ones of the same name)."""
    with wiring.sessions() as session:
        return registry.catalog(session, principal.tenant)


@router.get("/{name}", response_model=ItemTemplateRead, responses=responses(401, 403, 404))
def one_item_template(
    name: NamePath,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.work_read)],
    version: Annotated[str | None, Query(max_length=32, description="Default: the latest release.")] = None,
) -> ItemTemplateRead:
    """One template: the version asked for, else its latest release."""
    with wiring.sessions() as session:
        return registry.view(registry.find(session, principal.tenant, name, version))


@router.get("/{name}/versions", response_model=list[ItemTemplateRead], responses=responses(401, 403, 404))
def item_template_versions(
    name: NamePath, wiring: WiringDep, principal: Annotated[Principal, needs(Scope.work_read)]
) -> list[ItemTemplateRead]:
    """Every version of a template, oldest first (with each one's migration notes)."""
    with wiring.sessions() as session:
        return registry.versions(session, principal.tenant, name)


@router.post(
    "/{name}/instantiate",
    status_code=201,
    response_model=Instantiated,
    responses={
        200: {"model": Instantiated, "description": "A retry with the same idempotence key: what the first created"},
        **responses(401, 403, 404, 409, 413, 422),
    },
)
def instantiate_item_template(
    name: NamePath,
    body: InstantiateRequest,
    response: Response,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.work_write)],
) -> Instantiated:
    """Create the template's item, its inclusions' items (children of it) and start its workflow
    saga, with these parameters: all the items or none. Needs ``work:write`` (and ``sagas:write``
    for a template with a workflow)."""
    done = instantiate(wiring.sessions, wiring.settings, principal, name, body)
    if not done.created:
        response.status_code = 200
    return done
