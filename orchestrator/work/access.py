"""Scope and tenant checks, one place for the rules and their messages."""

from __future__ import annotations

from models.principal import Principal, Scope
from orchestrator.errors import Forbidden, InvalidInput


def require(principal: Principal, scope: Scope) -> None:
    if not principal.has(scope.value):
        raise Forbidden(
            f"this token lacks the {scope.value} scope",
            details=[{"path": "scope", "message": f"needs {scope.value}"}],
        )


def tenant_for_write(principal: Principal, tenant: str | None) -> str:
    """The tenant a new item goes to: the token's own, or for an all-tenants token the one named."""
    if principal.all_tenants:
        if tenant is None:
            raise InvalidInput(
                "this token works across tenants; name the item's tenant",
                details=[{"path": "tenant", "message": "required for an all-tenants token"}],
            )
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
    return principal.tenant
