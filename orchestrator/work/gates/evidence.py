"""Evidence for gates: written once, never changed. Each artifact carries a SHA-256: computed
from inline content (a declared one must match), or declared with the uri of an external one.

The evidence id is the caller's and unique in the tenant: the same id with the same body again
answers the evidence already written (a retry); another body under it is a 409. There is no
route that updates or deletes evidence.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.gate_tables import EvidenceRow
from models.policies import ArtifactRead, EvidenceCreate, EvidenceRead
from models.principal import Principal, Scope
from models.work_tables import WorkItem
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.work import audit
from orchestrator.work.access import require
from orchestrator.work.gates.evaluate import live_policy, policy_of
from orchestrator.work.views import load_item


def attach(session: Session, principal: Principal, item_id: str, body: EvidenceCreate) -> tuple[EvidenceRead, bool]:
    """Write evidence on an item (True), or answer the same evidence written before (False)."""
    require(principal, Scope.work_write)
    item = load_item(session, principal, item_id, lock=True)
    if body.work_item_id is not None and body.work_item_id != item.id:
        raise InvalidInput(
            f"workItemId {body.work_item_id!r} is not the item of the path ({item.id})",
            details=[{"path": "workItemId", "message": f"must be {item.id} or left out"}],
        )
    digest = _body_hash(item.id, body)
    existing = session.get(EvidenceRow, (item.tenant, body.id))
    if existing is not None:
        return _same(existing, digest), False
    policy_id = body.policy_id or policy_of(session, item)
    version = _check_policy(session, item, policy_id, body)
    artifacts = [_artifact(body.id, n, a.model_dump()) for n, a in enumerate(body.artifacts)]
    ids = [a["id"] for a in artifacts]
    if len(set(ids)) != len(ids):
        raise InvalidInput(
            "artifact ids must be unique in one evidence",
            details=[
                {"path": f"artifacts.{n}.id", "message": "repeated"} for n, i in enumerate(ids) if ids.count(i) > 1
            ],
        )
    row = write(
        session,
        item,
        evidence_id=body.id,
        policy_id=policy_id,
        policy_version=version,
        evidence_type=body.evidence_type,
        checks=list(dict.fromkeys(body.checks)),
        meta=body.metadata,
        artifacts=artifacts,
        body_hash=digest,
        actor=principal.ref,
    )
    if row is None:  # written concurrently under the same id
        existing = session.get(EvidenceRow, (item.tenant, body.id))
        assert existing is not None
        return _same(existing, digest), False
    return read(row), True


def write(
    session: Session,
    item: WorkItem,
    *,
    evidence_id: str,
    policy_id: str | None,
    policy_version: int | None,
    evidence_type: str,
    checks: list[str],
    meta: dict[str, Any],
    artifacts: list[dict[str, Any]],
    body_hash: str,
    actor: str,
) -> EvidenceRow | None:
    """Insert one evidence row and audit it; None if the id was taken meanwhile."""
    row = EvidenceRow(
        tenant=item.tenant,
        id=evidence_id,
        item_id=item.id,
        policy_id=policy_id,
        policy_version=policy_version,
        evidence_type=evidence_type,
        checks=checks,
        meta=meta,
        artifacts=artifacts,
        body_hash=body_hash,
        created_by=actor,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    audit.record(
        session,
        item,
        "evidence",
        actor,
        details={
            "evidence": evidence_id,
            # The body's digest: what names the evidence as an agent's artifact (spec §13).
            "sha256": body_hash,
            "type": evidence_type,
            "policy": policy_id,
            "checks": checks,
            "artifacts": [{"id": a["id"], "sha256": a["sha256"]} for a in artifacts],
        },
    )
    return row


def listed(session: Session, principal: Principal, item_id: str) -> list[EvidenceRead]:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    rows = session.scalars(
        select(EvidenceRow).where(EvidenceRow.item_id == item.id).order_by(EvidenceRow.created_at, EvidenceRow.id)
    ).all()
    return [read(r) for r in rows]


def read(row: EvidenceRow) -> EvidenceRead:
    return EvidenceRead(
        id=row.id,
        policy_id=row.policy_id,
        policy_version=row.policy_version,
        work_item_id=row.item_id,
        evidence_type=row.evidence_type,
        checks=list(row.checks),
        created_by=row.created_by,
        created_at=row.created_at,
        metadata=dict(row.meta),
        artifacts=[ArtifactRead.model_validate(a) for a in row.artifacts],
    )


def content_digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _artifact(evidence_id: str, n: int, given: dict[str, Any]) -> dict[str, Any]:
    path = f"artifacts.{n}"
    content, uri, declared = given.get("content"), given.get("uri"), given.get("sha256")
    if (content is None) == (uri is None):
        raise InvalidInput(
            "an artifact is inline content or an external uri with its sha256, one of the two",
            details=[{"path": f"{path}.content", "message": "give content, or uri and sha256"}],
        )
    if content is not None:
        digest = content_digest(content)
        if declared is not None and declared != digest:
            raise InvalidInput(
                f"artifact {n}: the declared sha256 is not the content's ({digest})",
                details=[{"path": f"{path}.sha256", "message": f"the content's SHA-256 is {digest}"}],
            )
        size: int | None = len(content.encode())
    else:
        if declared is None:
            raise InvalidInput(
                f"artifact {n} is external: declare its sha256",
                details=[{"path": f"{path}.sha256", "message": "required with uri"}],
            )
        digest, size = declared, None
    return {
        "id": given.get("id") or f"ART-{evidence_id}-{n + 1:03d}",
        "name": given.get("name"),
        "media_type": given.get("media_type"),
        "uri": uri,
        "sha256": digest,
        "size": size,
        "content": content,
    }


def _check_policy(session: Session, item: WorkItem, policy_id: str | None, body: EvidenceCreate) -> int | None:
    """The live version of the policy the evidence is for; its checks must name the policy's."""
    if policy_id is None:
        if body.checks:
            raise InvalidInput(
                "evidence naming checks needs a policy: the item names none, give policyId",
                details=[{"path": "policyId", "message": "required when checks are named"}],
            )
        return None
    found = live_policy(session, item, policy_id)
    if found is None:
        raise InvalidInput(
            f"no policy {policy_id!r}",
            details=[{"path": "policyId", "message": "not registered for the item's tenant"}],
        )
    row, spec = found
    for n, name in enumerate(body.checks):
        if spec.check(name) is None:
            known = ", ".join(c.name for c in spec.checks) or "none"
            raise InvalidInput(
                f"policy {policy_id!r} has no check {name!r}",
                details=[{"path": f"checks.{n}", "message": f"the policy's checks: {known}"}],
            )
    return row.version


def _same(existing: EvidenceRow, digest: str) -> EvidenceRead:
    if existing.body_hash != digest:
        raise Conflict(
            f"evidence {existing.id!r} exists with another body; evidence is immutable",
            details=[{"path": "id", "message": "taken by other evidence"}],
        )
    return read(existing)


def _body_hash(item_id: str, body: EvidenceCreate) -> str:
    document = body.model_dump(mode="json", by_alias=True) | {"workItemId": item_id}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
