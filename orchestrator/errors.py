"""Errors the orchestrator raises; each knows its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(OrchestratorError):
    status = 404
    code = "not_found"


class Conflict(OrchestratorError):
    status = 409
    code = "conflict"


class InvalidInput(OrchestratorError):
    status = 422
    code = "invalid_input"


class Unauthorized(OrchestratorError):
    status = 401
    code = "unauthorized"


class Forbidden(OrchestratorError):
    status = 403
    code = "forbidden"


class PayloadTooLarge(OrchestratorError):
    status = 413
    code = "payload_too_large"
