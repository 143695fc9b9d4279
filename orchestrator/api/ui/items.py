"""``/ui/items``: work items with filters, and an item's page with its history.

Read through the API's own routes (``orchestrator.api.work_items``): the same tenancy and
``work:read`` rules hold.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from orchestrator.api import work_items as api
from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.access import OperatorDep
from orchestrator.api.ui.html import Html, esc, join, link, page, state, table, tag, url
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/ui/items", include_in_schema=False)
WiringDep = Annotated[Wiring, Depends(get_wiring)]
Filter = Annotated[str | None, Query(max_length=200)]


@router.get("", response_class=HTMLResponse)
def items_page(
    wiring: WiringDep,
    operator: OperatorDep,
    type: Filter = None,
    status: Filter = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    saga_id: Filter = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    filters = {"type": type or None, "status": status or None, "tenant": tenant or None, "saga_id": saga_id or None}
    found = api.list_work_items(wiring, operator.principal, **filters, limit=50, cursor=cursor or None)
    rows = [
        (
            link(url(f"/items/{i.id}"), tag("code", i.id)),
            i.tenant,
            i.type,
            i.title,
            state(i.status),
            f"{i.claim.type.value}:{i.claim.id}" if i.claim else None,
            link(url(f"/sagas/{i.saga.saga_id}"), f"{i.saga.step} (attempt {i.saga.attempt})") if i.saga else None,
            i.sla_breached_at,
            i.created_at,
        )
        for i in found.items
    ]
    inputs = [
        tag("label", f" {name} " + Html(f'<input name="{name}" size="12" value="{esc(value or "")}">'))
        for name, value in filters.items()
        if name != "tenant" or operator.principal.all_tenants
    ]
    form = tag(
        "form",
        join([*inputs, Html(" "), tag("button", "Filter", type="submit")]),
        method="get",
        action=url("/items"),
        class_="box",
    )
    more = link(url("/items", **filters, cursor=found.next_cursor), "Next page →") if found.next_cursor else ""
    body = form + table(
        ["item", "tenant", "type", "title", "status", "held by", "saga step", "SLA breached", "created"],
        rows,
        empty="no item matches",
    )
    return HTMLResponse(
        page("Work items", body + esc(more), principal=operator.principal, csrf=operator.csrf, active="items")
    )


@router.get("/{item_id}", response_class=HTMLResponse)
def item_page(item_id: str, wiring: WiringDep, operator: OperatorDep) -> Response:
    item = api.get_work_item(item_id, wiring, operator.principal)
    history = api.work_item_history(item_id, wiring, operator.principal)
    facts: list[tuple[str, Any]] = [
        ("status", state(item.status)),
        ("tenant", item.tenant),
        ("type / lifecycle", f"{item.type} / {item.lifecycle}"),
        ("priority", item.priority),
        ("offer", tag("code", json.dumps(item.offer.model_dump(mode="json"))) if item.offer else None),
        (
            "held by",
            f"{item.claim.type.value}:{item.claim.id} (lease until {item.claim.lease_expires_at})"
            if item.claim
            else None,
        ),
        (
            "saga",
            link(url(f"/sagas/{item.saga.saga_id}"), f"{item.saga.saga_id} · {item.saga.step}") if item.saga else None,
        ),
        ("SLA warned / breached", Html(f"{esc(item.sla_warned_at)} / {esc(item.sla_breached_at)}")),
        ("payload", tag("code", json.dumps(item.payload))),
        ("result", tag("code", json.dumps(item.result)) if item.result is not None else None),
        ("created", item.created_at),
    ]
    events = [
        (e.at, e.action, e.actor, f"{e.from_status or ''} → {e.to_status or ''}" if e.to_status else None, e.reason)
        for e in history
    ]
    body = (
        tag("h2", item.title)
        + table(["", ""], facts)
        + tag("h2", "History")
        + table(["at", "what", "who", "status", "reason"], events, empty="no event")
    )
    return HTMLResponse(
        page(f"Work item {item.id}", body, principal=operator.principal, csrf=operator.csrf, active="items")
    )
