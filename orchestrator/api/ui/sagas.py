"""``/ui/sagas``: the sagas list with its filters, a saga's page, and its controls.

Every read and every control goes through the functions the API's routes call
(``orchestrator.sagas.queries``, the routes of ``orchestrator.api.sagas`` themselves), with the
scope each route needs checked first: what the page shows and does is what the token may.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from models.api import SagaControlBody, SagaRead, SagaRerun, SagaRerunRead
from models.documents import DocumentError, loads
from models.enums import SagaState
from models.principal import Principal, Scope
from orchestrator.api import sagas as api
from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.access import Operator, OperatorDep, text, when
from orchestrator.api.ui.bulk import bulk_form
from orchestrator.api.ui.html import Html, esc, join, link, page, post_form, state, table, tag, url
from orchestrator.errors import Forbidden, InvalidInput
from orchestrator.sagas.queries import list_sagas
from orchestrator.service.wiring import Wiring
from orchestrator.work.access import require

router = APIRouter(prefix="/ui/sagas", include_in_schema=False)
WiringDep = Annotated[Wiring, Depends(get_wiring)]


class Control(Protocol):
    """An API route that controls one saga with a reason (``orchestrator.api.sagas``)."""

    def __call__(self, saga_id: str, body: SagaControlBody, wiring: Wiring, principal: Principal) -> SagaRead: ...


# The controls that take only a reason, by the names of their API routes: the button, the route.
CONTROLS: dict[str, tuple[str, Control]] = {
    "cancel": ("Cancel (undo what it did)", api.cancel_saga),
    "terminate": ("Terminate (undo nothing)", api.terminate_saga),
    "pause": ("Pause", api.pause_saga),
    "resume": ("Resume", api.resume_saga),
    "retry-compensation": ("Retry the compensation", api.retry_compensation),
}
NOTICES = {name: f"{name.replace('-', ' ')}: done" for name in CONTROLS} | {"rerun": "rerun: started"}
RERUNNABLE = (SagaState.compensated, SagaState.compensation_failed, SagaState.cancelled, SagaState.terminated)


@router.get("", response_class=HTMLResponse)
def sagas_page(
    wiring: WiringDep,
    operator: OperatorDep,
    # Text, not the enum: the filter form sends state= for "any state".
    state_: Annotated[str | None, Query(alias="state", max_length=40)] = None,
    template: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    principal = operator.principal
    require(principal, Scope.sagas_read)
    chosen = _state(state_)
    template, tenant = template or None, tenant or None
    if tenant is not None and not principal.all_tenants and tenant != principal.tenant:
        raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
    with wiring.sessions() as session:
        found = list_sagas(
            session,
            state=chosen,
            template=template,
            limit=limit,
            cursor=cursor or None,
            tenant=principal.tenant,
            of_tenant=tenant,
            created_from=when(since, "since"),
            created_before=when(until, "until"),
        )
    filters: dict[str, Any] = {"state": chosen.value if chosen else None, "template": template, "tenant": tenant}
    filters |= {"since": since, "until": until, "limit": limit}
    rows = [
        (
            link(url(f"/sagas/{s.id}"), Html(f"<code>{esc(s.id)}</code>")),
            s.tenant,
            f"{s.template_name} {s.template_version}",
            state(s.state) + (Html(" ") + state("paused") if s.paused_at else ""),
            s.created_at,
            s.finished_at,
            s.error,
        )
        for s in found.items
    ]
    more = link(url("/sagas", **filters, cursor=found.next_cursor), "Next page →") if found.next_cursor else ""
    body = (
        _filter_form(operator, filters)
        + bulk_form(operator, filters)
        + table(
            ["saga", "tenant", "template", "state", "submitted (UTC)", "finished", "error"],
            rows,
            empty="no saga matches",
        )
    )
    return HTMLResponse(page("Sagas", body + more, principal=principal, csrf=operator.csrf, active="sagas"))


def _state(value: str | None) -> SagaState | None:
    if not value:
        return None
    try:
        return SagaState(value)
    except ValueError:
        choices = ", ".join(s.value for s in SagaState)
        raise InvalidInput(
            f"state {value!r} is not a saga state: one of {choices}",
            details=[{"path": "query.state", "message": "not a saga state"}],
        ) from None


def _filter_form(operator: Operator, filters: dict[str, Any]) -> Html:
    options = [tag("option", "any state", value="")] + [
        tag("option", s.value, value=s.value, selected=filters["state"] == s.value) for s in SagaState
    ]
    fields = [
        tag("label", "state " + tag("select", join(options), name="state")),
        tag("label", " template " + Html(f'<input name="template" value="{esc(filters["template"] or "")}">')),
    ]
    if operator.principal.all_tenants:
        fields.append(
            tag("label", " tenant " + Html(f'<input name="tenant" size="10" value="{esc(filters["tenant"] or "")}">'))
        )
    for name in ("since", "until"):
        value = esc(filters[name] or "")
        fields.append(
            tag("label", f" {name} (UTC) " + Html(f'<input type="datetime-local" name="{name}" value="{value}">'))
        )
    fields.append(Html(" ") + tag("button", "Filter", type="submit"))
    return tag("form", join(fields), method="get", action=url("/sagas"), class_="box")


@router.get("/{saga_id}", response_class=HTMLResponse)
def saga_page(
    saga_id: str, wiring: WiringDep, operator: OperatorDep, notice: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    saga = api.get_saga(saga_id, wiring, operator.principal)
    return HTMLResponse(_saga_html(operator, saga, notice=NOTICES.get(notice or "")))


def _saga_html(
    operator: Operator, saga: SagaRead, *, notice: str | None = None, plan: SagaRerunRead | None = None
) -> Html:
    parts: list[Any] = []
    if notice:
        parts.append(tag("p", notice, class_="notice"))
    paused = f" · paused since {saga.paused_at:%Y-%m-%d %H:%M:%S}" if saga.paused_at else ""
    parts.append(
        tag(
            "p",
            join([state(saga.state), f" {saga.template_name} {saga.template_version} · tenant {saga.tenant}{paused}"]),
            class_="box",
        )
    )
    if saga.error:
        parts.append(tag("p", "Error: " + saga.error, class_="error"))
    parts.append(tag("h2", "Steps"))
    graph = [Html('<span class="muted">→</span>') if i else "" for i in range(len(saga.steps))]
    parts.append(
        tag(
            "div",
            join(
                join([arrow, tag("span", join([tag("strong", s.name), " ", state(s.state)]), class_="step")])
                for arrow, s in zip(graph, saga.steps, strict=True)
            ),
            class_="graph",
        )
    )
    parts.append(_compensation(saga))
    parts.append(tag("h2", "Timeline"))
    parts.append(
        table(
            ["step", "phase", "attempt", "outcome", "worker", "fence", "dispatched", "duration", "error"],
            [
                (
                    a.step_name,
                    a.phase.value,
                    a.attempt,
                    state(a.outcome),
                    a.worker,
                    a.fencing_token,
                    a.dispatched_at,
                    f"{a.duration_ms:.1f} ms" if a.duration_ms is not None else None,
                    a.error,
                )
                for a in saga.attempts
            ],
            empty="no attempt yet",
        )
    )
    parts.append(tag("h2", "Work items it waits on"))
    parts.append(
        table(
            ["item", "title", "status", "step", "holder", "lease until", "SLA due"],
            [
                (
                    link(url(f"/items/{i.id}"), i.id),
                    i.title,
                    state(i.status),
                    i.step,
                    i.holder,
                    i.lease_expires_at,
                    i.sla_due_at,
                )
                for i in saga.work_items
            ],
            empty="none",
        )
    )
    parts.append(_sla(saga))
    if saga.audit:
        parts.append(tag("h2", "Operators' controls"))
        parts.append(
            table(["at", "who", "what", "why"], [(e.at, e.actor, e.action.value, e.reason) for e in saga.audit])
        )
    if plan is not None:
        parts.append(_plan(plan))
    parts.append(_controls(operator, saga))
    title = f"Saga {saga.id}"
    return page(title, join(parts), principal=operator.principal, csrf=operator.csrf, active="sagas")


def _compensation(saga: SagaRead) -> Html:
    undone = [s for s in saga.steps if s.compensation_attempts or "compensat" in s.state.value]
    if saga.state is SagaState.running and not undone:
        return Html("")
    rows = [(s.name, state(s.state), s.compensation_attempts, s.error) for s in reversed(undone)]
    return tag("h2", "Compensation") + table(
        ["step (in the order undone)", "state", "compensation attempts", "last error"], rows, empty="nothing to undo"
    )


def _sla(saga: SagaRead) -> Html:
    if saga.sla is None and not saga.sla_events and not saga.paused_ms:
        return Html("")
    clocks = [
        ("SLA", tag("code", json.dumps(saga.sla)) if saga.sla else None),
        ("warned at", saga.sla_warned_at),
        ("breached at", saga.sla_breached_at),
        ("breach steps fired", saga.sla_breach_count),
        ("paused for (earlier pauses)", f"{saga.paused_ms / 1000:.1f} s"),
        ("clocks stopped since (paused)", saga.paused_at),
    ]
    events = [
        (e.get("kind") or e.get("event"), e.get("at"), tag("code", json.dumps(e, default=str))) for e in saga.sla_events
    ]
    return (
        tag("h2", "SLA clocks")
        + table(["clock", "value"], clocks)
        + (table(["event", "at", "detail"], events) if events else Html(""))
    )


def _controls(operator: Operator, saga: SagaRead) -> Html:
    if not operator.may(Scope.sagas_control):
        return tag("p", "This token lacks the sagas:control scope: no controls.", class_="muted")
    applies = {
        "cancel": saga.state is SagaState.running,
        "terminate": saga.state in (SagaState.running, SagaState.compensating),
        "pause": saga.state in (SagaState.running, SagaState.compensating) and saga.paused_at is None,
        "resume": saga.paused_at is not None,
        "retry-compensation": saga.state is SagaState.compensation_failed,
    }
    forms = [
        post_form(
            url(f"/sagas/{saga.id}/{name}"),
            operator.csrf,
            tag("label", "reason " + Html('<input name="reason" required maxlength="1000" size="24">')) + Html(" "),
            button=label,
        )
        for name, (label, _) in CONTROLS.items()
        if applies[name]
    ]
    if saga.state in RERUNNABLE:
        steps = [tag("option", "(first that did not succeed)", value="")] + [
            tag("option", s.name, value=s.name) for s in saga.steps
        ]
        fields = join(
            [
                tag("label", "reason " + Html('<input name="reason" required maxlength="1000" size="24">')),
                tag("label", " from step " + tag("select", join(steps), name="from_step")),
                Html("<br>"),
                tag("label", "input patch (JSON merge patch) " + Html('<br><textarea name="input_patch"></textarea>')),
                Html("<br>"),
                tag(
                    "label",
                    Html('<input type="checkbox" name="dry_run" value="1" checked> dry run (only show the plan) '),
                ),
            ]
        )
        forms.append(post_form(url(f"/sagas/{saga.id}/rerun"), operator.csrf, fields, button="Rerun"))
    if not forms:
        return tag("h2", "Controls") + tag("p", f"none applies to a {saga.state.value} saga", class_="muted")
    return tag("h2", "Controls") + tag("div", join(forms), class_="controls")


def _plan(plan: SagaRerunRead) -> Html:
    rows = [
        (s.name, "runs again" if s.runs else "keeps its result", "yes" if s.earlier_keys else "no", s.why)
        for s in plan.steps
    ]
    head = f"Rerun plan from {plan.start} (dry run: nothing was done)" if plan.dry_run else f"Rerun from {plan.start}"
    return (
        tag("h2", head)
        + tag("p", join(["input: ", tag("code", json.dumps(plan.input))]))
        + table(["step", "what becomes of it", "earlier idempotence keys", "why"], rows)
    )


Reason = Annotated[str | None, Form(max_length=1000)]
Csrf = Annotated[str | None, Form(max_length=200)]


@router.post("/{saga_id}/rerun", response_class=HTMLResponse)
def rerun(
    saga_id: str,
    wiring: WiringDep,
    operator: OperatorDep,
    csrf: Csrf = None,
    reason: Reason = None,
    from_step: Annotated[str | None, Form(max_length=200)] = None,
    input_patch: Annotated[str | None, Form(max_length=100_000)] = None,
    dry_run: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    operator.visit.check_csrf(csrf)
    require(operator.principal, Scope.sagas_control)
    patch: dict[str, Any] | None = None
    if text(input_patch, "input_patch", limit=100_000):
        try:
            # Checked as the API's gate checks a JSON body: no NaN, no NUL, not too deep.
            loaded = loads(str(input_patch), "input_patch")
        except DocumentError as exc:
            raise InvalidInput(
                f"input_patch {exc.message}", details=[{"path": exc.path, "message": exc.message}]
            ) from None
        except ValueError as exc:
            raise InvalidInput(f"input_patch is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput("input_patch must be a JSON object (a merge patch)")
        patch = loaded
    body = SagaRerun(
        reason=_reason(reason), from_step=text(from_step, "from_step") or None, input_patch=patch, dry_run=bool(dry_run)
    )
    done = api.rerun_saga(saga_id, body, wiring, operator.principal)
    if done.dry_run:
        return HTMLResponse(_saga_html(operator, done.saga, plan=done))
    return RedirectResponse(url(f"/sagas/{saga_id}", notice="rerun"), status_code=303)


@router.post("/{saga_id}/{action}", response_class=HTMLResponse)
def control(
    saga_id: str, action: str, wiring: WiringDep, operator: OperatorDep, csrf: Csrf = None, reason: Reason = None
) -> Response:
    operator.visit.check_csrf(csrf)
    if action not in CONTROLS:
        raise InvalidInput(f"{action!r} is not a control: one of {', '.join(CONTROLS)} or rerun")
    require(operator.principal, Scope.sagas_control)
    CONTROLS[action][1](saga_id, SagaControlBody(reason=_reason(reason)), wiring, operator.principal)
    return RedirectResponse(url(f"/sagas/{saga_id}", notice=action), status_code=303)


def _reason(reason: str | None) -> str:
    said = (text(reason, "reason") or "").strip()
    if not said:
        raise InvalidInput("say why (the reason is kept in the saga's audit trail)")
    return said
