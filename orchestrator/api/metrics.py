"""``/metrics``: what Prometheus scrapes (orchestrator/metrics)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST

from models.principal import Principal, Scope
from orchestrator.api.auth import METRICS_PATH, bearer, get_principal
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import Forbidden
from orchestrator.service.wiring import Wiring
from orchestrator.work.access import require

router = APIRouter(tags=["metrics"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]


async def metrics_reader(
    request: Request,
    wiring: WiringDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    """The scraper: anyone where ``WORKYARD_METRICS_PUBLIC`` is set, else an all-tenant token with
    ``metrics:read`` (the figures count every tenant's sagas and items)."""
    if wiring.settings.metrics_public:
        return None
    principal = await get_principal(request, wiring, credentials)
    require(principal, Scope.metrics_read)
    if not principal.all_tenants:
        raise Forbidden(
            "the metrics count every tenant's sagas and items: scraping them needs an operator's all-tenant token",
            details=[{"path": "tenant", "message": f"{principal.tenant} is one tenant; needs *"}],
        )
    return principal


@router.get(
    METRICS_PATH,
    response_class=Response,
    responses={
        200: {
            "description": "The metrics, in Prometheus' text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(401, 403),
    },
)
def scrape(wiring: WiringDep, _reader: Annotated[Principal | None, Depends(metrics_reader)]) -> Response:
    """Prometheus metrics: sagas by state, work items by type and status (created, mean time to
    start and to complete), SLA breaches, compensation runs, step latency per capability,
    capability queues' depth and oldest message, outbox and timer lag, webhook failures, dead
    letters. Counts may be up to ``WORKYARD_METRICS_MAX_AGE_S`` old (their age is a metric).
    Needs an all-tenant token with ``metrics:read`` unless ``WORKYARD_METRICS_PUBLIC`` is set."""
    return Response(wiring.metrics.render(), media_type=CONTENT_TYPE_LATEST)
