"""Who is calling: a user or an agent, in a tenant, with scopes, groups and capabilities."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# A tenant of "*" is an operator's: it sees and acts in every tenant.
ALL_TENANTS = "*"


class Scope(StrEnum):
    """What a token allows. ``admin`` allows everything."""

    work_read = "work:read"  # read and list items, their history, queues, next-work for oneself
    work_write = "work:write"  # create, update, delete, transition items
    work_claim = "work:claim"  # claim, heartbeat, release, start, complete, fail
    work_supervise = "work:supervise"  # queues and next-work of other principals and groups
    types_write = "types:write"  # register work-item types
    sagas_read = "sagas:read"  # read sagas and saga templates (not tenant-scoped yet)
    sagas_write = "sagas:write"  # submit sagas
    sagas_control = "sagas:control"  # cancel and terminate the tenant's sagas (an operator's)
    templates_write = "templates:write"  # register saga templates
    webhooks = "webhooks"  # register a tenant's webhooks and read their delivery log
    agents_read = "agents:read"  # list and read the agent registry (liveness, load, spend)
    agents_write = "agents:write"  # register, update and deregister any agent of the token's tenant
    agents_register = "agents:register"  # an agent registers, updates and deregisters itself only
    routing_write = "routing:write"  # register and disable routing rules, reroute work items
    policies_read = "policies:read"  # list and read policies (the checks and approval steps of gates)
    policies_write = "policies:write"  # register policies and new versions of them
    # approve or reject at an item's gate; the approver must also be in the step's role (a group)
    work_approve = "work:approve"
    metrics_read = "metrics:read"  # scrape GET /metrics (with an all-tenant token: its figures span every tenant)
    # list, read, replay and purge dead letters: an all-tenant token's only (a message nobody could
    # act on names no tenant one could trust, and may hold any tenant's data)
    dead_letters = "dead-letters:manage"
    admin = "admin"


# workyard's own scopes, and the namespaces they live in: a custom scope (``finance:approve``, for
# offers to the people holding it) must be in a namespace of its own, so that a misspelt scope of
# workyard's (``work:cliam``) is refused rather than taken for a custom one.
KNOWN_SCOPES = frozenset(s.value for s in Scope)
RESERVED_NAMESPACES = frozenset(s.partition(":")[0] for s in KNOWN_SCOPES)
_CUSTOM = r"[a-z][a-z0-9_-]{0,62}:[a-z0-9][a-z0-9_.-]{0,126}"
# The same rule as one ECMA regex, for the OpenAPI: a known scope, or a custom one outside the
# reserved namespaces.
SCOPE_PATTERN = (
    "^(?:"
    + "|".join(re.escape(s) for s in sorted(KNOWN_SCOPES))
    + ")$|^(?!(?:"
    + "|".join(re.escape(n) for n in sorted(RESERVED_NAMESPACES))
    + f"):){_CUSTOM}$"
)


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` is neither one of workyard's scopes nor a custom one; None when it is fine."""
    if scope in KNOWN_SCOPES:
        return None
    namespace, sep, _ = scope.partition(":")
    if sep and namespace in RESERVED_NAMESPACES:
        ours = ", ".join(sorted(s for s in KNOWN_SCOPES if s.startswith(f"{namespace}:")))
        return f"unknown scope(s) {scope}: workyard's {namespace}: scopes are {ours}"
    if re.fullmatch(_CUSTOM, scope) is None:
        return (
            f"unknown scope(s) {scope}: a custom scope looks like <namespace>:<name> in lower case "
            f"(e.g. finance:approve); workyard's own: {', '.join(sorted(KNOWN_SCOPES))}"
        )
    return None


class PrincipalType(StrEnum):
    """Whether a principal is a person (user) or an agent."""

    user = "user"
    agent = "agent"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user or an agent of one tenant, with the scopes, groups and capabilities its token grants."""

    type: PrincipalType
    id: str
    tenant: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    capabilities: frozenset[str] = field(default_factory=frozenset)

    @property
    def ref(self) -> str:
        """``user:alice`` / ``agent:summarizer-1``: how the audit trail names the principal."""
        return f"{self.type.value}:{self.id}"

    @property
    def all_tenants(self) -> bool:
        return self.tenant == ALL_TENANTS

    def has(self, scope: str) -> bool:
        return Scope.admin.value in self.scopes or scope in self.scopes

    def sees(self, tenant: str) -> bool:
        return self.all_tenants or tenant == self.tenant


def parse_principal(text: str) -> tuple[PrincipalType, str]:
    """``agent:summarizer-1`` -> (agent, "summarizer-1"); ValueError with the fix otherwise."""
    kind, sep, ident = text.partition(":")
    if not sep or not ident or kind not in PrincipalType.__members__:
        raise ValueError(f"principal {text!r} must look like user:<id> or agent:<id>")
    return PrincipalType(kind), ident
