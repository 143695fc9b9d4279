"""``/ui/signin`` and ``/ui/signout``: a workyard token in, a session cookie out.

The sign-in form carries a CSRF token too (bound to the anonymous session its page started), so
another site cannot sign a browser in under a token of its choosing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.access import VisitDep, principal_of, text
from orchestrator.api.ui.html import Html, esc, page, post_form, tag, url
from orchestrator.api.ui.session import new_session
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/ui", include_in_schema=False)
WiringDep = Annotated[Wiring, Depends(get_wiring)]


def _form(csrf: str, problem: str | None = None) -> Html:
    said = tag("p", problem, class_="error") if problem else Html("")
    field = tag(
        "label",
        "Token " + Html('<input type="password" name="token" autocomplete="off" required size="50" autofocus>') + " ",
    )
    hint = tag("p", "A token from `workyard token create` (or the admin token `workyard up` printed).", class_="muted")
    return said + post_form(url("/signin"), csrf, field, button="Sign in", class_="box") + hint


@router.get("", response_class=HTMLResponse)
def home(request: Request, visit: VisitDep) -> Response:
    target = "/sagas" if visit.session.token else "/signin"
    return visit.keep(RedirectResponse(url(target), status_code=303), request)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, visit: VisitDep) -> Response:
    return visit.keep(HTMLResponse(page("Sign in", _form(visit.csrf))), request)


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    visit: VisitDep,
    wiring: WiringDep,
    token: Annotated[str | None, Form(max_length=1000)] = None,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    visit.check_csrf(csrf)
    secret = (text(token, "token") or "").strip()
    principal = principal_of(wiring, secret) if secret else None
    if principal is None:
        answer = HTMLResponse(page("Sign in", _form(visit.csrf, "That token is unknown or revoked.")), status_code=401)
        return visit.keep(answer, request)
    # A new nonce: no CSRF token of the anonymous session works in the signed-in one.
    return visit.keep(RedirectResponse(url("/sagas"), status_code=303), request, new_session(secret))


@router.post("/signout", response_class=HTMLResponse)
def signout(request: Request, visit: VisitDep, csrf: Annotated[str | None, Form(max_length=200)] = None) -> Response:
    visit.check_csrf(csrf)
    answer = HTMLResponse(page("Signed out", esc(tag("p", tag("a", "Sign in again", href=url("/signin"))))))
    return visit.keep(answer, request, new_session())
