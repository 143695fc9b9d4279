"""A saga's timeline as text, for the CLI and the demo."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.api import AttemptRead, SagaRead


def attempt_line(attempt: AttemptRead) -> str:
    duration = attempt.duration_ms
    took = f"{duration:7.1f} ms" if duration is not None else "       - "
    phase = "" if attempt.phase == "forward" else " (compensate)"
    worker = attempt.worker or "-"
    line = f"  {attempt.step_name + phase:<34} attempt {attempt.attempt:<2} {attempt.outcome:<10} {took}  {worker}"
    if attempt.fencing_token is not None:
        line += f"  fence={attempt.fencing_token}"
    if attempt.error:
        line += f"\n      {attempt.error}"
    return line


def render_saga(saga: SagaRead) -> str:
    lines = [f"saga {saga.id}  {saga.template_name} {saga.template_version}  state: {saga.state}"]
    if saga.idempotence_key:
        lines.append(f"  idempotence key: {saga.idempotence_key}")
    lines.append(
        f"  created {saga.created_at:%Y-%m-%d %H:%M:%S.%f}"[:-3]
        + (f"   finished {saga.finished_at:%H:%M:%S.%f}"[:-3] if saga.finished_at else "")
    )
    if saga.paused_at is not None:
        since = f"{saga.paused_at:%Y-%m-%d %H:%M:%S}"
        lines.append(f"  paused since {since}: nothing new is dispatched, its clocks stand still")
    if saga.held_by is not None and saga.held_at is not None:
        lines.append(f"  {held_line(saga)}: its next step waits, its clocks stand still")
    lines.append("  steps: " + "  ".join(f"{s.name}={s.state}" for s in saga.steps))
    if saga.sla is not None:
        due = saga.created_at + timedelta(milliseconds=saga.sla["target_ms"] + saga.paused_ms)
        clock = sla_clock(due, saga.sla_breached_at, saga.sla_breach_count)
        lines.append(f"  saga {clock}, on breach: {saga.sla['breach_action']}")
        for event in saga.sla_events:
            what = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "what") and v not in (None, []))
            lines.append(f"    {event['at'][11:23]}  {event['what']}" + (f"  ({what})" if what else ""))
    lines.append("  timeline (step, attempt, outcome, duration, worker):")
    lines.extend(attempt_line(a) for a in saga.attempts)
    if saga.work_items:
        lines.append("  work items (status, step, holder):")
        for item in saga.work_items:
            where = f"{item.step} (compensate)" if item.phase == "compensate" else (item.step or "-")
            holder = item.holder or "unclaimed"
            if item.lease_expires_at is not None:
                holder += f", lease until {item.lease_expires_at:%H:%M:%S}"
            lines.append(f"  {item.id}  {item.status:<11} {where:<24} {holder}")
            lines.append(f"      {item.type}: {item.title}")
            if item.sla_due_at is not None:
                lines.append("      " + sla_clock(item.sla_due_at, item.sla_breached_at, item.sla_breach_count))
    if saga.audit:
        lines.append("  controls (when, who, what, why):")
        for entry in saga.audit:
            moved = f"{entry.detail.get('from')} -> {entry.detail.get('to')}"
            lines.append(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor}  {entry.action} ({moved}): {entry.reason}")
    if saga.error:
        lines.append(f"  error: {saga.error}")
    return "\n".join(lines)


def sla_clock(due: datetime, breached_at: datetime | None, breaches: int) -> str:
    if breached_at is None:
        return f"SLA due {due:%Y-%m-%d %H:%M:%S}"
    return f"SLA due {due:%Y-%m-%d %H:%M:%S}, breached at {breached_at:%H:%M:%S} ({breaches} time(s))"


def held_line(saga: SagaRead) -> str:
    """ "held since ... by the pause of capability payments (every tenant's sagas), by user:ops: why"."""
    assert saga.held_by is not None and saga.held_at is not None
    kind, tenant, name = saga.held_by.split(":", 2)
    whose = "every tenant's sagas" if tenant == "*" else f"tenant {tenant}'s sagas"
    line = f"held since {saga.held_at:%Y-%m-%d %H:%M:%S} by the pause of {kind} {name} ({whose})"
    if saga.hold is not None:
        line += f", paused by {saga.hold.actor}: {saga.hold.reason}"
    return line
