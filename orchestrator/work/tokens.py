"""API tokens: created by an operator, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, PrincipalType, Scope, scope_problem
from models.work_tables import ApiToken

PREFIX = "wy_"


@dataclass(frozen=True)
class IssuedToken:
    """A newly created API token: its id, and the secret shown once and never stored."""

    id: str
    secret: str  # the bearer token; not stored anywhere


def _hash(token: str) -> str:
    # The secret has 256 bits of entropy, so a plain hash cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    principal_type: PrincipalType,
    principal_id: str,
    tenant: str,
    scopes: Iterable[str],
    groups: Iterable[str] = (),
    capabilities: Iterable[str] = (),
    description: str = "",
) -> IssuedToken:
    scopes = sorted(set(scopes))
    problems = [problem for s in scopes if (problem := scope_problem(s)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    token_id = secrets.token_hex(8)
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiToken(
            id=token_id,
            token_hash=_hash(secret),
            principal_type=principal_type.value,
            principal_id=principal_id,
            tenant=tenant,
            scopes=scopes,
            groups=sorted(set(groups)),
            capabilities=sorted(set(capabilities)),
            description=description,
        )
    )
    return IssuedToken(id=token_id, secret=secret)


def resolve_token(session: Session, secret: str) -> Principal | None:
    """The principal behind a bearer token, or None for an unknown or revoked one."""
    if not secret.startswith(PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(secret)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(
        type=PrincipalType(row.principal_type),
        id=row.principal_id,
        tenant=row.tenant,
        scopes=frozenset(row.scopes),
        groups=frozenset(row.groups),
        capabilities=frozenset(row.capabilities),
    )


def revoke_token(session: Session, token_id: str) -> bool:
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))


def ensure_admin_token(session: Session, path: Path) -> str:
    """The embedded default's admin token: kept in the data dir (mode 0600) and reused while its
    hash is still in the database, so restarting ``workyard up`` does not change it."""
    if path.exists():
        secret = path.read_text().strip()
        if resolve_token(session, secret) is not None:
            return secret
    issued = create_token(
        session,
        principal_type=PrincipalType.user,
        principal_id="admin",
        tenant=ALL_TENANTS,
        scopes=[Scope.admin.value],
        description="admin token of the embedded default (workyard up)",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(issued.secret + "\n")
    return issued.secret


def known_groups(session: Session) -> set[str]:
    """Groups some active token's principal is in: the groups an item can be offered to."""
    rows = session.scalars(select(ApiToken.groups).where(ApiToken.revoked_at.is_(None)))
    return {group for groups in rows for group in groups}


def unknown_groups(session: Session, groups: Iterable[str]) -> list[str]:
    known = known_groups(session)
    return [g for g in dict.fromkeys(groups) if g not in known]
