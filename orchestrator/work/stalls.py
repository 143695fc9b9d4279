"""Stalled holders: an agent that keeps its lease alive but reports no progress.

A dead holder stops beating and its lease lapses (``claims.fire_lease_timer``). A stalled one
beats on with the same progress: that is not visible from the lease, so every agent's claim
arms a durable ``stall_check`` timer at its first rung (the last progress plus the rung's
``after_ms``). When it fires without progress since, the holder is stalled (audited, a
``work_item.stalled`` webhook) and the rung's action runs, as an SLA's would; the timer moves on
to the next rung. Progress since the last check starts the ladder over, from that progress. The
timer is not moved by heartbeats (no write per beat): it re-checks when due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.enums import TimerKind
from models.sla import EscalationStep, StallSpec
from models.tables import Timer
from models.work_tables import WorkItem
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit, webhooks
from orchestrator.work.sla.actions import SYSTEM, apply, event_of, holder_of

# A stall ladder is kept in its timer's payload, so firing it needs no settings.
Rungs = list[EscalationStep]


def ladder(item: WorkItem, default_after_s: float | None) -> Rungs:
    """The item's own stall ladder, else the server's: notify after ``default_after_s``."""
    if item.stall is not None:
        return StallSpec.model_validate(item.stall).rungs()
    return default_ladder(default_after_s)


def default_ladder(default_after_s: float | None) -> Rungs:
    """The server's stall ladder, for items without their own: notify after ``default_after_s``."""
    if default_after_s is None:
        return []
    return [EscalationStep(after_ms=int(default_after_s * 1000), action="notify")]


def first_rung(rungs: Rungs, now: datetime) -> tuple[datetime, list[dict[str, object]]]:
    """For a clock started at ``now`` (a claim's): when its timer is due, and the rungs its
    payload carries (what ``arm`` writes; the one-statement claim writes it from these)."""
    return now + _after(rungs[0]), _rungs_json(rungs)


def timer_key(item_id: str) -> str:
    return f"{TimerKind.stall_check.value}:{item_id}"


def arm(session: Session, item: WorkItem, default_after_s: float | None, now: datetime) -> None:
    """A new agent's claim: its stall clock starts from the claim (``progress_at``)."""
    uow = uow_of(session)
    uow.cancel_timer(timer_key(item.id))
    rungs = ladder(item, default_after_s)
    if not rungs or item.progress_at is None:
        return
    uow.arm_timer(
        timer_key(item.id),
        TimerKind.stall_check,
        item.progress_at + _after(rungs[0]),
        now,
        item_id=item.id,
        payload=_payload(item.lease_epoch, 0, rungs),
    )


def fire(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """The stall clock is due: the holder made no progress for the rung's time (stalled, and the
    rung's action), or it did (start over from that progress). A claim that ended or changed
    since, or a lease that lapsed (dead, not stalled), leaves nothing to do."""
    if item is None or not item.is_open or item.claimed_by_id is None or item.lease_expires_at is None:
        return
    if item.lease_epoch != timer.payload.get("lease_epoch") or item.lease_expires_at <= now:
        return
    rungs = [EscalationStep.model_validate(r) for r in timer.payload.get("rungs", [])]
    step = int(timer.payload.get("step", 0))
    since = item.progress_at or item.claimed_at or now
    if not rungs:
        return
    if step >= len(rungs):
        # The ladder is spent. Still stalled: look again later. Progress since: watch it anew.
        if item.stalled_at is not None:
            _push(timer, now + _after(rungs[0]), item.lease_epoch, step, rungs, now)
            return
        step = 0
    if since + _after(rungs[step]) > now:
        # Progress since the last rung: the ladder starts over from it (the timer is pushed on).
        _push(timer, since + _after(rungs[0]), item.lease_epoch, 0, rungs, now)
        return
    rung = rungs[step]
    holder = holder_of(item)
    if step == 0:
        item.stalled_at = now
        details = {"holder": holder, "since": since.isoformat(), "lease_epoch": item.lease_epoch}
        audit.record(session, item, "stalled", SYSTEM, details={**details, "progress": item.progress})
        webhooks.emit(session, item.tenant, "work_item.stalled", {**event_of(item, rung.action), **details}, now)
    audit.record(
        session,
        item,
        "stall_step",
        SYSTEM,
        details={"step": step + 1, "of": len(rungs), "action": rung.action, "to": rung.to, "holder": holder},
    )
    apply(session, item, rung.action, rung.to, now, why=f"stalled: no progress since {since.isoformat()}")
    if item.claimed_by_id is None or item.lease_epoch != timer.payload.get("lease_epoch"):
        return  # the rung took the item from its holder: this claim's clock is over
    if step + 1 < len(rungs):
        _push(timer, since + _after(rungs[step + 1]), item.lease_epoch, step + 1, rungs, now)
    else:
        # Kept, past the last rung: progress later and a stall after that are watched as well.
        _push(timer, now + _after(rungs[0]), item.lease_epoch, len(rungs), rungs, now)


def progressed(session: Session, item: WorkItem, actor: str, now: datetime) -> None:
    """A stalled holder reported progress again: it is working (audited); its clock starts over."""
    if item.stalled_at is None:
        return
    audit.record(session, item, "progressing", actor, details={"stalled_at": item.stalled_at.isoformat()})
    item.stalled_at = None


def _push(timer: Timer, due: datetime, epoch: int, step: int, rungs: Rungs, now: datetime) -> None:
    # The timer loop keeps a timer its handler pushed into the future (as the lease timer does);
    # a rung already past fires at the next tick.
    timer.due_at = max(due, now + timedelta(milliseconds=1))
    timer.payload = _payload(epoch, step, rungs)


def _payload(epoch: int, step: int, rungs: Rungs) -> dict[str, object]:
    return {"lease_epoch": epoch, "step": step, "rungs": _rungs_json(rungs)}


def _rungs_json(rungs: Rungs) -> list[dict[str, object]]:
    return [r.model_dump(mode="json") for r in rungs]


def _after(rung: EscalationStep) -> timedelta:
    return timedelta(milliseconds=rung.after_ms)
