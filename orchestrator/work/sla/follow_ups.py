"""Items for a person about something that went wrong elsewhere: a remediation, an approval to
continue late work. SLAs open them for late items and late sagas, and sagas whose compensation
gave up; each is opened once per key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models.lifecycles import LIFECYCLES
from models.work_tables import WorkItem
from orchestrator.work import audit
from orchestrator.work.ids import work_item_id


def open_follow_up(
    session: Session,
    now: datetime,
    *,
    tenant: str,
    kind: str,
    key: str,
    title: str,
    description: str,
    payload: dict[str, Any],
    scope: str,
    created_by: str,
    priority: int,
    meta: dict[str, Any] | None = None,
    reporter: tuple[str | None, str | None] = (None, None),
    saga_id: str | None = None,
    saga_step: str | None = None,
    trace_id: str | None = None,
) -> str:
    """Open the item (offered to people holding ``scope``) unless ``key`` opened it already; its id."""
    item_id = work_item_id(tenant, kind, now, key)
    if session.get(WorkItem, item_id) is not None:
        return item_id
    lifecycle = LIFECYCLES["canonical" if kind == "remediation" else "work"]
    item = WorkItem(
        id=item_id,
        code=item_id,
        tenant=tenant,
        type=kind,
        lifecycle=lifecycle.name,
        title=title[:500],
        description=description,
        priority=priority,
        status=lifecycle.initial,
        is_open=True,
        created_by=created_by,
        reporter_type=reporter[0],
        reporter_id=reporter[1],
        payload=payload,
        meta=meta or {},
        idempotence_key=key[:255],
        offer_type="human",
        offer_scope=scope,
        lease_epoch=0,
        version=1,
        saga_id=saga_id,
        saga_step=saga_step,
        trace_id=trace_id,
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    session.flush()
    audit.record(session, item, "created", created_by, to_status=item.status, details={"type": kind, **(meta or {})})
    return item_id
