"""Who is signed in to the operator page, and the checks every page and form makes.

A page's principal is the one its session's token names, resolved exactly as a bearer token is
(``orchestrator.api.auth.authenticate``): the page then calls the same read and control functions
as the API's routes, under the same tenant and scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from config.settings import Settings
from models.documents import text_problem
from models.principal import Principal, Scope
from orchestrator.api.auth import PRINCIPAL_KEY, authenticate
from orchestrator.api.deps import get_wiring
from orchestrator.api.ui.session import COOKIE, SessionKeys, UiSession, new_session, session_keys
from orchestrator.errors import Forbidden, InvalidInput, OrchestratorError, Unauthorized
from orchestrator.service.wiring import Wiring
from orchestrator.work.access import require


class SignInNeeded(Exception):
    """No session, or its token is unknown or revoked: the page sends the browser to sign in."""


class CsrfRefused(OrchestratorError):
    """A form posted without its session's CSRF token."""

    status = 403
    code = "csrf"


@dataclass(frozen=True)
class Visit:
    """One request's session (fresh if it came without one) and what it needs to answer."""

    session: UiSession
    keys: SessionKeys
    settings: Settings
    fresh: bool

    @property
    def csrf(self) -> str:
        return self.keys.csrf(self.session)

    def check_csrf(self, sent: str | None) -> None:
        if self.fresh or not self.keys.csrf_ok(self.session, sent):
            raise CsrfRefused("this form's CSRF token is missing or not this session's: reload the page and try again")

    def keep(self, response: Response, request: Request, session: UiSession | None = None) -> Response:
        """Set the session cookie on ``response`` (``session``, else this visit's when it is new)."""
        chosen = session or (self.session if self.fresh else None)
        if chosen is not None:
            response.set_cookie(
                COOKIE,
                self.keys.seal(chosen),
                max_age=self.settings.ui_session_ttl_s,
                path="/ui",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response


@dataclass(frozen=True)
class Operator:
    """A signed-in visit: its principal, as the API would resolve its token."""

    visit: Visit
    principal: Principal

    @property
    def csrf(self) -> str:
        return self.visit.csrf

    def may(self, scope: Scope) -> bool:
        return self.principal.has(scope.value)


async def visit(request: Request, wiring: Annotated[Wiring, Depends(get_wiring)]) -> Visit:
    keys = session_keys(wiring.settings)
    session = keys.open(request.cookies.get(COOKIE), wiring.settings.ui_session_ttl_s)
    if session is None:
        return Visit(new_session(), keys, wiring.settings, fresh=True)
    return Visit(session, keys, wiring.settings, fresh=False)


VisitDep = Annotated[Visit, Depends(visit)]


def principal_of(wiring: Wiring, token: str) -> Principal | None:
    """The principal ``token`` names, as the API's bearer check finds it; None if none."""
    try:
        return authenticate(wiring, f"Bearer {token}")
    except Unauthorized:
        return None


def signed_in(request: Request, visit: VisitDep, wiring: Annotated[Wiring, Depends(get_wiring)]) -> Operator:
    if visit.session.token is None:
        raise SignInNeeded
    principal = principal_of(wiring, visit.session.token)
    if principal is None:
        raise SignInNeeded
    # Where the API's bearer check leaves it: the access log names who acted through the page.
    setattr(request.state, PRINCIPAL_KEY, principal)
    return Operator(visit, principal)


OperatorDep = Annotated[Operator, Depends(signed_in)]


def all_tenant(operator: Operator, scope: Scope, what: str) -> None:
    """Pages whose figures span every tenant (queues, mutex scopes, dead letters) need an
    all-tenant token with ``scope``, as the API's routes for them do."""
    require(operator.principal, scope)
    if not operator.principal.all_tenants:
        raise Forbidden(f"{what} span every tenant: only an all-tenant token (tenant *) may see them")


def text(value: str | None, field: str, *, limit: int = 1000) -> str | None:
    """A form field as text the API would take: no NUL, no lone surrogate, not too long."""
    if value is None:
        return None
    problem = text_problem(value)
    if problem is None and len(value) > limit:
        problem = f"is longer than {limit} characters"
    if problem is not None:
        raise InvalidInput(f"{field} {problem}", details=[{"path": f"form.{field}", "message": problem}])
    return value


def when(value: str | None, field: str) -> datetime | None:
    """A time from the filter form (``2026-12-05T08:00``, read as UTC) or from a link (ISO 8601)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{field} is not a time (YYYY-MM-DDTHH:MM, UTC)",
            details=[{"path": f"query.{field}", "message": "not a time"}],
        ) from None
    try:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 lies before the calendar's first UTC instant
        raise InvalidInput(
            f"{field} is out of range", details=[{"path": f"query.{field}", "message": "out of range"}]
        ) from None
