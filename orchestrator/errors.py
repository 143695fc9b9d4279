"""Errors the orchestrator raises; each knows its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """The root of the orchestrator's errors: each subclass names the HTTP status and API error code it becomes."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(OrchestratorError):
    """The thing does not exist, or is another tenant's (a 404 either way)."""

    status = 404
    code = "not_found"


class Conflict(OrchestratorError):
    """The request clashes with the current state: a stale version, a lost lease, a claim already taken (409)."""

    status = 409
    code = "conflict"


class InvalidInput(OrchestratorError):
    """The request or template is invalid; nothing was written (422)."""

    status = 422
    code = "invalid_input"


class Unauthorized(OrchestratorError):
    """No bearer token, or one that is unknown or revoked (401)."""

    status = 401
    code = "unauthorized"


class Forbidden(OrchestratorError):
    """The principal's scopes do not allow this (403)."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(OrchestratorError):
    """The request body is larger than the API accepts (413)."""

    status = 413
    code = "payload_too_large"
