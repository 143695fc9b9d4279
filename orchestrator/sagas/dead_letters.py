"""Dead letters: messages nobody could act on (a malformed report or step dispatch, a report that
could not be applied, an undecodable body), kept with the reason. An operator lists and reads
them, replays one once what made it fail is fixed, and purges what is of no more use.

A replay writes the message to the outbox in the transaction that deletes the dead letter
(invariant 1): it is published once that commits, or by the outbox sweep. If it fails again it
comes back as a new dead letter; a replay delivered twice is a duplicate message, which every
consumer of ours drops (invariant 2).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from config import keys
from models.dead_letter_api import (
    PREVIEW_CHARS,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterPurge,
    DeadLetterPurged,
    DeadLetterRead,
    DeadLetterReplayed,
    DeadLetterSummary,
)
from models.tables import DeadLetter
from orchestrator.errors import Conflict, NotFound
from orchestrator.storage.cursors import decode_cursor, encode_cursor
from orchestrator.storage.unit_of_work import uow_of

# Sources whose messages are step reports, for the orchestrator's report queue.
REPORT_SOURCES = frozenset({keys.ORCHESTRATOR_QUEUE, "recovered from the workers' store"})


def replay_target(source: str, body: str) -> tuple[str, dict[str, Any]] | str:
    """The queue and outbox payload that send ``body`` again to where it came from; or why it
    cannot be (its source is no queue of ours, or its body is not a message that queue takes)."""
    try:
        message = json.loads(body)
    except ValueError:
        return "its body is not JSON (undecodable, or cut when it was kept)"
    if source in REPORT_SOURCES:
        if not isinstance(message, dict):
            return "its body is not a JSON object, as a step report is"
        return keys.ORCHESTRATOR_QUEUE, {"kind": "report", "body": message}
    if source.startswith(keys.CAPABILITY_QUEUE_PREFIX) and len(source) > len(keys.CAPABILITY_QUEUE_PREFIX):
        dispatch = _dispatch_of(message)
        if dispatch is None:
            return "its body is neither a step dispatch nor a Celery task message holding one"
        timeout_ms = dispatch.get("timeout_ms")
        return source, {
            # A task id of its own: Flower shows the replay apart from the first delivery.
            "task_id": f"replay-{dispatch.get('saga_id', 'unknown')}-{dispatch.get('step_index', 'x')}",
            "shadow": f"{dispatch.get('handler') or 'step'} (replayed)",
            "timeout_ms": timeout_ms if isinstance(timeout_ms, int) and not isinstance(timeout_ms, bool) else None,
            "body": dispatch,
        }
    return f"its source {source!r} is not a queue replay knows (cap.<capability> or {keys.ORCHESTRATOR_QUEUE})"


def _dispatch_of(message: Any) -> dict[str, Any] | None:
    """The dispatch a worker refused: as its task's argument, or inside Celery's task body
    (protocol 2: ``[args, kwargs, embed]``) when the task itself was refused."""
    if isinstance(message, dict):
        return message
    if isinstance(message, list) and message and isinstance(message[0], list) and len(message[0]) == 1:
        inner = message[0][0]
        return inner if isinstance(inner, dict) else None
    return None


def _summary(row: DeadLetter) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "reason": row.reason,
        "received_at": row.received_at,
        "body_preview": row.body[:PREVIEW_CHARS],
        "body_chars": len(row.body),
        "replayable": not isinstance(replay_target(row.source, row.body), str),
    }


def list_dead_letters(
    session: Session, *, source: str | None = None, limit: int = 50, cursor: str | None = None
) -> DeadLetterPage:
    """Newest first, paged by an opaque cursor."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit + 1)
    if source is not None:
        query = query.where(DeadLetter.source == source)
    if cursor:
        (last_id,) = decode_cursor(cursor, int)
        query = query.where(DeadLetter.id < last_id)
    rows = session.scalars(query).all()
    items = [DeadLetterSummary.model_validate(_summary(r)) for r in rows[:limit]]
    return DeadLetterPage(items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)


def _get(session: Session, letter_id: int, *, lock: bool = False) -> DeadLetter:
    query = select(DeadLetter).where(DeadLetter.id == letter_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"no dead letter {letter_id}")
    return row


def read_dead_letter(session: Session, letter_id: int) -> DeadLetterRead:
    row = _get(session, letter_id)
    return DeadLetterRead.model_validate({**_summary(row), "body": row.body})


def replay(session: Session, letter_id: int, now: datetime) -> DeadLetterReplayed:
    """Send a dead letter again to its queue (through the outbox) and delete it, in the
    caller's transaction; 409 if it cannot be replayed (it is kept)."""
    row = _get(session, letter_id, lock=True)
    target = replay_target(row.source, row.body)
    if isinstance(target, str):
        raise Conflict(f"dead letter {letter_id} cannot be replayed: {target}; purge it if it is of no more use")
    queue, payload = target
    uow_of(session).send(queue, payload, now)
    session.delete(row)
    return DeadLetterReplayed(id=letter_id, queue=queue)


def delete_dead_letter(session: Session, letter_id: int) -> None:
    session.delete(_get(session, letter_id, lock=True))


def _where(query: Select[Any], where: DeadLetterFilter) -> Select[Any]:
    if where.source is not None:
        query = query.where(DeadLetter.source == where.source)
    if where.reason_contains is not None:
        query = query.where(DeadLetter.reason.contains(where.reason_contains, autoescape=True))
    if where.received_before is not None:
        query = query.where(DeadLetter.received_at < where.received_before)
    return query


def purge(session: Session, request: DeadLetterPurge) -> DeadLetterPurged:
    """Count the dead letters the filter matches; unless a dry run, delete them if the count is
    still the one the caller expects (409 otherwise: nothing is deleted)."""
    matched = int(session.scalar(_where(select(func.count()).select_from(DeadLetter), request.filter)) or 0)
    if request.dry_run:
        return DeadLetterPurged(matched=matched, deleted=0, dry_run=True)
    if request.expect is None:
        raise Conflict("send expect (the count a dry run answered) with dry_run false")
    if matched != request.expect:
        raise Conflict(
            f"the filter matches {matched} dead letter(s) now, not the {request.expect} expected: nothing was deleted",
            details={"matched": matched, "expect": request.expect},
        )
    ids = select(DeadLetter.id)
    deleted = session.execute(delete(DeadLetter).where(DeadLetter.id.in_(_where(ids, request.filter))))
    return DeadLetterPurged(matched=matched, deleted=int(getattr(deleted, "rowcount", 0) or 0), dry_run=False)
