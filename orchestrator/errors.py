"""Errors the orchestrator raises; each knows its HTTP status and a stable code."""

from __future__ import annotations

from models.errors import WorkyardError


class OrchestratorError(WorkyardError):
    """An error of the orchestrator's: answered with its HTTP status and code by the API, shown
    as one line by the CLI."""

    status = 400
    code = "bad_request"


class NotFound(OrchestratorError):
    """There is no such thing (or it belongs to another tenant)."""

    status = 404
    code = "not_found"


class Conflict(OrchestratorError):
    """The thing is in a state that does not allow this, or the request contradicts an earlier one."""

    status = 409
    code = "conflict"


class InvalidInput(OrchestratorError):
    """The request's content is wrong; ``details`` names the fields."""

    status = 422
    code = "invalid_input"


class Unauthorized(OrchestratorError):
    """No valid token."""

    status = 401
    code = "unauthorized"


class Forbidden(OrchestratorError):
    """The token's scopes or tenant do not allow this."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(OrchestratorError):
    """A body or stored blob over its size limit."""

    status = 413
    code = "payload_too_large"


class Unavailable(OrchestratorError):
    """The database (or, for a proxy, the API) is away or busy: nothing was done, and the same call
    may be made again shortly."""

    status = 503
    code = "unavailable"
    retryable = True
