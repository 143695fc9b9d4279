"""Who may read and change which agent.

``agents:write`` is an operator's: any agent of its token's tenant (an all-tenant token's: any
agent, ``*`` ones included). ``agents:register`` is an agent's own: it registers, updates and
deregisters itself only, in its token's tenant, declaring no capability its token does not grant
(when the token lists any). ``agents:read`` (or ``agents:write``) reads the registry; an agent
may always read itself. ``admin`` may do everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.principal import Principal, PrincipalType, Scope
from orchestrator.errors import Forbidden


def is_self(principal: Principal, tenant: str, agent_id: str) -> bool:
    """Whether the principal is the agent ``agent_id`` of ``tenant`` itself."""
    return principal.type is PrincipalType.agent and principal.id == agent_id and principal.tenant == tenant


def check_write(principal: Principal, tenant: str, agent_id: str, capabilities: Iterable[str] = ()) -> bool:
    """Raise Forbidden unless the principal may register or change agent ``agent_id`` of
    ``tenant`` declaring ``capabilities``; True when it does so as the agent itself."""
    if principal.has(Scope.agents_write.value):
        if not principal.sees(tenant):
            raise Forbidden(
                f"this token is for tenant {principal.tenant!r}; agents of {tenant!r} are not its to change",
                details=[{"path": "tenant", "message": f"needs a token of {tenant!r} or an all-tenant one"}],
            )
        return is_self(principal, tenant, agent_id)
    check_may_write(principal)
    if not is_self(principal, tenant, agent_id):
        raise Forbidden(
            f"agents:register lets an agent register itself only; {principal.ref} of tenant {principal.tenant!r} "
            f"is not agent {agent_id!r} of tenant {tenant!r}",
            details=[{"path": "id", "message": f"must be {principal.id!r}, in tenant {principal.tenant!r}"}],
        )
    if principal.capabilities:
        extra = sorted(set(capabilities) - principal.capabilities)
        if extra:
            raise Forbidden(
                f"this token does not grant capability {', '.join(extra)}; an agent declares only those it was given",
                details=[{"path": "capabilities", "message": f"not in the token: {', '.join(extra)}"}],
            )
    return True


def check_may_write(principal: Principal) -> None:
    """Raise Forbidden unless the token may change some agent (checked before any lookup, so a
    token without the scope learns nothing of which agents exist)."""
    if not (principal.has(Scope.agents_write.value) or principal.has(Scope.agents_register.value)):
        raise Forbidden(
            "this token lacks the agents:write scope (or agents:register, for an agent changing itself)",
            details=[{"path": "scope", "message": "needs agents:write or agents:register"}],
        )


def check_read(principal: Principal, tenant: str | None, agent_id: str) -> None:
    """Raise Forbidden unless the principal may read agent ``agent_id`` of ``tenant`` (None: before
    the lookup, which only an agent reading itself may make without agents:read)."""
    if principal.has(Scope.agents_read.value) or principal.has(Scope.agents_write.value):
        return
    if principal.type is PrincipalType.agent and principal.id == agent_id:
        if tenant is None or principal.tenant == tenant:
            return
    raise Forbidden(
        "this token lacks the agents:read scope", details=[{"path": "scope", "message": "needs agents:read"}]
    )


def check_list(principal: Principal) -> None:
    if not (principal.has(Scope.agents_read.value) or principal.has(Scope.agents_write.value)):
        raise Forbidden(
            "this token lacks the agents:read scope", details=[{"path": "scope", "message": "needs agents:read"}]
        )
