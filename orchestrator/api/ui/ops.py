"""``/ui/queues``, ``/ui/dead-letters`` and ``/ui/mutexes``: what spans every tenant.

Each needs an all-tenant token, with the scope its API counterpart needs: queue figures are what
``/metrics`` serves (``metrics:read``), dead letters what ``/api/v1/dead-letters`` serves
(``dead-letters:manage``), and mutex scopes name any tenant's keys (``sagas:read``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from models.agent_api import AgentRead
from models.base import utcnow
from models.principal import ALL_TENANTS, Scope
from orchestrator.agents.listing import list_agents
from orchestrator.agents.liveness import Thresholds
from orchestrator.api import dead_letters as dead_letters_api
from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.access import Operator, OperatorDep, all_tenant
from orchestrator.api.ui.html import Html, esc, link, page, post_form, table, tag, url
from orchestrator.metrics.figures import template_capabilities
from orchestrator.sagas.mutexes import mutex_scopes
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/ui", include_in_schema=False)
WiringDep = Annotated[Wiring, Depends(get_wiring)]
# Celery workers announce themselves into the agent registry under this registrant.
WORKER_REGISTRANT = "system:celery"


def _age(at: datetime | None, now: datetime) -> str | None:
    return None if at is None else f"{max(0.0, (now - at).total_seconds()):.1f} s"


@router.get("/queues", response_class=HTMLResponse)
def queues_page(wiring: WiringDep, operator: OperatorDep) -> Response:
    all_tenant(operator, Scope.metrics_read, "queue figures")
    now = utcnow()
    # Consumers come from the agent registry, which needs agents:read as its API route does.
    sees_workers = operator.may(Scope.agents_read) or operator.may(Scope.agents_write)
    with wiring.sessions() as session:
        capabilities = template_capabilities(session)
    workers = _workers(wiring, operator, capabilities) if sees_workers else {}
    # The broker's queues as /metrics reads them (None: a RabbitMQ broker, whose lengths it cannot read).
    reader = wiring.metrics.collector.queues
    depths = {d.capability: d for d in reader(capabilities)} if reader is not None and capabilities else {}
    hidden = Html('<span class="muted">needs agents:read</span>')
    rows = []
    for capability in capabilities:
        depth = depths.get(capability)
        found = workers.get(capability, [])
        live = [a.id for a in found if a.liveness == "live"]
        others = ", ".join(f"{a.id} ({a.liveness})" for a in found if a.liveness != "live") or None
        rows.append(
            (
                tag("code", f"cap.{capability}"),
                depth.messages if depth is not None else None,
                _age(depth.oldest_dispatched_at, now) if depth is not None and depth.messages else None,
                len(live) if sees_workers else hidden,
                (", ".join(live) or Html('<span class="muted">no live worker</span>')) if sees_workers else hidden,
                others if sees_workers else hidden,
            )
        )
    note = (
        "" if reader is not None else tag("p", "The broker is not Redis: queue lengths are not read.", class_="muted")
    )
    body = note + table(
        ["queue", "messages waiting", "oldest waiting", "live consumers", "live workers", "other workers"],
        rows,
        empty="no template names a capability yet",
    )
    return HTMLResponse(page("Queues", body, principal=operator.principal, csrf=operator.csrf, active="queues"))


def _workers(wiring: Wiring, operator: Operator, capabilities: list[str]) -> dict[str, list[AgentRead]]:
    """The Celery workers the agent registry knows for each capability, live or not."""
    thresholds = Thresholds.of(wiring.settings)
    found: dict[str, list[AgentRead]] = {}
    with wiring.sessions() as session:
        for capability in capabilities:
            page = list_agents(
                session, operator.principal, thresholds=thresholds, capability=capability, tenant=ALL_TENANTS, limit=500
            )
            found[capability] = [a for a in page.agents if a.registered_by == WORKER_REGISTRANT]
    return found


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters_page(
    wiring: WiringDep,
    operator: OperatorDep,
    source: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    all_tenant(operator, Scope.dead_letters, "dead letters")
    found = dead_letters_api.list_dead_letters(wiring, operator.principal, source or None, 50, cursor or None)
    rows = [
        (
            letter.id,
            tag("code", letter.source),
            letter.reason,
            letter.received_at,
            tag("code", letter.body_preview),
            post_form(url(f"/dead-letters/{letter.id}/replay"), operator.csrf, "", button="Replay")
            if letter.replayable
            else tag("span", "not replayable", class_="muted"),
        )
        for letter in found.items
    ]
    more = (
        link(url("/dead-letters", source=source, cursor=found.next_cursor), "Next page →") if found.next_cursor else ""
    )
    said = tag("p", f"dead letter {notice} replayed", class_="notice") if notice and notice.isdigit() else ""
    body = said + table(["id", "source", "reason", "received", "body (start)", ""], rows, empty="no dead letter") + more
    return HTMLResponse(
        page("Dead letters", body, principal=operator.principal, csrf=operator.csrf, active="dead-letters")
    )


@router.post("/dead-letters/{letter_id}/replay", response_class=HTMLResponse)
def replay(
    letter_id: dead_letters_api.LetterId,
    wiring: WiringDep,
    operator: OperatorDep,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    operator.visit.check_csrf(csrf)
    all_tenant(operator, Scope.dead_letters, "dead letters")
    dead_letters_api.replay_dead_letter(letter_id, wiring, operator.principal)
    return RedirectResponse(url("/dead-letters", notice=str(letter_id)), status_code=303)


@router.get("/mutexes", response_class=HTMLResponse)
def mutexes_page(wiring: WiringDep, operator: OperatorDep) -> Response:
    all_tenant(operator, Scope.sagas_read, "mutex scopes")
    scopes, more = mutex_scopes(wiring.store_client)
    rows = [
        (
            tag("code", m.scope),
            m.holder or Html('<span class="muted">free</span>'),
            f"{m.expires_in_ms / 1000:.1f} s" if m.expires_in_ms is not None else None,
            m.fencing_token,
        )
        for m in scopes
    ]
    cut = tag("p", "More scopes exist than are shown.", class_="muted") if more else ""
    body = table(
        ["mutex scope", "holder", "lease left", "highest fencing token"], rows, empty="no mutex scope used yet"
    )
    return HTMLResponse(
        page("Mutex scopes", body + esc(cut), principal=operator.principal, csrf=operator.csrf, active="mutexes")
    )
