"""``POST /ui/sagas/bulk``: one control applied to every saga the list's filter matches.

Two steps, as the API's ``POST /api/v1/sagas/bulk`` wants them: a dry run shows how many sagas
match (and the first of them), then a confirmation carries that count as ``expect``; if the filter
matches another number by then, nothing is done (a 409 page).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from models.api import SagaBulkControl, SagaBulkRead, SagaFilter
from models.enums import SagaControl, SagaState
from models.principal import Scope
from models.problems import error_details, summary
from orchestrator.api import sagas as api
from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.access import Operator, OperatorDep, text, when
from orchestrator.api.ui.html import Html, hidden, join, link, page, post_form, table, tag, url
from orchestrator.errors import InvalidInput
from orchestrator.service.wiring import Wiring
from orchestrator.work.access import require

router = APIRouter(prefix="/ui/sagas", include_in_schema=False)
WiringDep = Annotated[Wiring, Depends(get_wiring)]
# The controls a bulk control may apply (a rerun is one saga at a time, from its page).
ACTIONS = [SagaControl.cancel, SagaControl.terminate, SagaControl.pause, SagaControl.resume]
FILTER_FIELDS = ("state", "template", "tenant", "since", "until")
Field = Annotated[str | None, Form(max_length=200)]


def bulk_form(operator: Operator, filters: dict[str, Any]) -> Html:
    """The form under a filtered sagas list: nothing for a token without sagas:control, or no filter."""
    given = {name: filters.get(name) for name in FILTER_FIELDS if filters.get(name)}
    if not operator.may(Scope.sagas_control) or not given:
        return Html("")
    options = join(tag("option", action.value, value=action.value) for action in ACTIONS)
    fields = join(
        [
            *(hidden(name, str(value)) for name, value in given.items()),
            "Every saga this filter matches: ",
            tag("select", options, name="action"),
            tag("label", " reason " + Html('<input name="reason" required maxlength="1000" size="24">')),
            " ",
        ]
    )
    return post_form(url("/sagas/bulk"), operator.csrf, fields, button="Count them first", class_="box")


@router.post("/bulk", response_class=HTMLResponse)
def bulk(
    wiring: WiringDep,
    operator: OperatorDep,
    csrf: Field = None,
    action: Field = None,
    reason: Annotated[str | None, Form(max_length=1000)] = None,
    state: Field = None,
    template: Field = None,
    tenant: Field = None,
    since: Field = None,
    until: Field = None,
    expect: Annotated[int | None, Form(ge=0)] = None,
) -> Response:
    operator.visit.check_csrf(csrf)
    require(operator.principal, Scope.sagas_control)
    given = {"state": state, "template": template, "tenant": tenant, "since": since, "until": until}
    given = {name: text(value, name) for name, value in given.items() if value}
    conditions = {
        "state": SagaState(state) if state in {s.value for s in SagaState} else state or None,
        "template": template or None,
        "tenant": tenant or None,
        "created_after": when(since, "since"),
        "created_before": when(until, "until"),
    }
    try:
        body = SagaBulkControl(
            action=SagaControl(action) if action in {a.value for a in ACTIONS} else _no_action(action),
            reason=(text(reason, "reason") or "").strip(),
            # Only the conditions given: the model refuses an explicit null (its schema has none).
            filter=SagaFilter(**{k: v for k, v in conditions.items() if v is not None}),
            dry_run=expect is None,
            expect=expect,
        )
    except (ValidationError, ValueError) as exc:
        details = error_details(exc.errors()) if isinstance(exc, ValidationError) else []
        raise InvalidInput(f"not valid: {summary(details) if details else exc}", details=details) from None
    done = api.control_sagas(body, wiring, operator.principal)
    return HTMLResponse(_answer(operator, body, done, given))


def _no_action(action: str | None) -> SagaControl:
    raise InvalidInput(f"{action!r} is not a bulk control: one of {', '.join(a.value for a in ACTIONS)}")


def _answer(operator: Operator, body: SagaBulkControl, done: SagaBulkRead, given: dict[str, Any]) -> Html:
    back = link(url("/sagas", **given), "Back to the list")
    said = ", ".join(f"{name} {value}" for name, value in given.items())
    if done.dry_run:
        sample = tag("ul", join(tag("li", link(url(f"/sagas/{s}"), tag("code", s))) for s in done.sample))
        confirm = post_form(
            url("/sagas/bulk"),
            operator.csrf,
            join(
                [
                    *(hidden(name, str(value)) for name, value in given.items()),
                    hidden("action", body.action.value),
                    hidden("reason", body.reason),
                    hidden("expect", str(done.matched)),
                ]
            ),
            button=f"{body.action.value.capitalize()} these {done.matched}",
            class_="box",
        )
        parts = [
            tag("p", f"{done.matched} saga(s) match {said}: nothing has been done yet.", class_="notice"),
            tag("p", "The first of them, oldest first:") + sample,
            confirm if done.matched else Html(""),
            back,
        ]
        return page(f"{body.action.value} in bulk", join(parts), principal=operator.principal, csrf=operator.csrf)
    rows = [(link(url(f"/sagas/{r.id}"), tag("code", r.id)), r.status, r.error) for r in done.results]
    parts = [
        tag(
            "p",
            f"{body.action.value}: {done.done} done, {done.refused} refused (reason: {body.reason}).",
            class_="notice",
        ),
        table(["saga", "status", "why refused"], rows),
        back,
    ]
    return page(f"{body.action.value} in bulk", join(parts), principal=operator.principal, csrf=operator.csrf)
