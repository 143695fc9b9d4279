"""What an operator looks at and maintains: timers, the webhook log, the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import click

from orchestrator.cli.base import Failure, current_settings, main, open_wiring

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.work_tables import Webhook


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--due/--all", "due_only", default=False, help="Only timers and deadlines already due.")
def timers(limit: int, due_only: bool) -> None:
    """Durable timers, soonest first: retries, deadlines, SLA warnings, breaches, escalations, lease
    expiries; then the deadlines of running attempts."""
    from sqlalchemy import func, select

    from models.base import utcnow
    from models.enums import Outcome
    from models.tables import StepAttempt, Timer

    wiring = open_wiring()
    now = utcnow()
    running = (StepAttempt.outcome == Outcome.running, StepAttempt.deadline_at.is_not(None))
    with wiring.sessions() as session:
        query = select(Timer).order_by(Timer.due_at, Timer.id).limit(limit)
        attempts = select(StepAttempt).where(*running).order_by(StepAttempt.deadline_at).limit(limit)
        if due_only:
            query = query.where(Timer.due_at <= now)
            attempts = attempts.where(StepAttempt.deadline_at <= now)
        rows = session.scalars(query).all()
        deadlines = session.scalars(attempts).all()
        total = session.scalar(select(func.count()).select_from(Timer)) or 0
        overdue = session.scalar(select(func.count()).select_from(Timer).where(Timer.due_at <= now)) or 0
        watched = session.scalar(select(func.count()).select_from(StepAttempt).where(*running)) or 0
        late = (
            session.scalar(
                select(func.count()).select_from(StepAttempt).where(*running, StepAttempt.deadline_at <= now)
            )
            or 0
        )
    wiring.close()
    click.echo(f"{total} timer(s), {overdue} due now")
    for timer in rows:
        subject = f"saga {timer.saga_id}" if timer.saga_id else f"item {timer.item_id}"
        click.echo(f"  {_when(timer.due_at, now)}  {timer.kind:<14} {subject}  {timer.payload or ''}")
    click.echo(f"{watched} running attempt(s) with a deadline, {late} past it")
    for attempt in deadlines:
        assert attempt.deadline_at is not None
        click.echo(
            f"  {_when(attempt.deadline_at, now)}  {'deadline':<14} saga {attempt.saga_id}  "
            f"step {attempt.step_name} {attempt.phase} attempt {attempt.attempt}"
        )


def _when(due_at: datetime, now: datetime) -> str:
    seconds = (due_at - now).total_seconds()
    return f"{due_at:%Y-%m-%d %H:%M:%S}  " + (f"in {seconds:8.1f} s" if seconds >= 0 else f"{-seconds:7.1f} s late")


@main.group("webhooks", invoke_without_command=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--tenant", default=None, help="Only this tenant's webhooks.")
@click.pass_context
def webhooks_group(ctx: click.Context, limit: int, tenant: str | None) -> None:
    """The webhook delivery log, newest first: event, state, attempts, last answer (without a
    command); and the webhooks themselves (list, delete, disable, enable, rotate-secret, redeliver,
    rekey)."""
    ctx.obj = tenant
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.work.webhooks import deliveries

    wiring = open_wiring()
    with wiring.sessions() as session:
        rows = deliveries(session, tenant=tenant, limit=limit)
    wiring.close()
    if not rows:
        click.echo("no webhook deliveries (register webhooks with POST /api/v1/webhooks)")
    for delivery, url in rows:
        answer = delivery.last_error or (f"HTTP {delivery.last_status}" if delivery.last_status else "-")
        click.echo(
            f"{delivery.id:>6}  {delivery.created_at:%Y-%m-%d %H:%M:%S}  {delivery.event:<24} {delivery.state:<9} "
            f"attempts={delivery.attempts}  {answer[:60]}  {url}"
        )


@webhooks_group.command("list")
@click.pass_obj
def webhooks_list(tenant: str | None) -> None:
    """Registered webhooks (never their secrets)."""
    from orchestrator.work.webhooks import listed

    wiring = open_wiring()
    with wiring.sessions() as session:
        rows = listed(session, tenant=tenant)
    wiring.close()
    if not rows:
        click.echo("no webhooks")
    for hook in rows:
        state = "disabled" if hook.disabled_at else "enabled"
        click.echo(f"{hook.id}  tenant={hook.tenant}  {state:<8}  events={','.join(hook.events)}  {hook.url}")


def _change_hook(hook_id: str, tenant: str | None, change: Callable[[Session, Webhook], str | None]) -> str | None:
    from orchestrator.errors import NotFound
    from orchestrator.work.webhooks import get

    wiring = open_wiring()
    try:
        with wiring.sessions.begin() as session:
            try:
                hook = get(session, hook_id, tenant=tenant, lock=True)
            except NotFound as exc:
                raise Failure(f"no webhook {hook_id!r}; `workyard webhooks list` shows them") from exc
            return change(session, hook)
    finally:
        wiring.close()


@webhooks_group.command("delete")
@click.argument("hook_id")
@click.pass_obj
def webhooks_delete(tenant: str | None, hook_id: str) -> None:
    """Delete a webhook: it hears nothing more, its secret is wiped, its pending deliveries fail."""
    from orchestrator.work.webhooks import delete

    _change_hook(hook_id, tenant, lambda session, hook: delete(session, hook))
    click.echo(f"deleted webhook {hook_id}")


@webhooks_group.command("disable")
@click.argument("hook_id")
@click.pass_obj
def webhooks_disable(tenant: str | None, hook_id: str) -> None:
    """Stop a webhook; its pending deliveries wait until it is enabled."""
    from orchestrator.work.webhooks import set_enabled

    _change_hook(hook_id, tenant, lambda session, hook: set_enabled(session, hook, False))
    click.echo(f"disabled webhook {hook_id}")


@webhooks_group.command("enable")
@click.argument("hook_id")
@click.pass_obj
def webhooks_enable(tenant: str | None, hook_id: str) -> None:
    """Start a disabled webhook again."""
    from orchestrator.work.webhooks import set_enabled

    _change_hook(hook_id, tenant, lambda session, hook: set_enabled(session, hook, True))
    click.echo(f"enabled webhook {hook_id}")


@webhooks_group.command("rotate-secret")
@click.argument("hook_id")
@click.pass_obj
def webhooks_rotate_secret(tenant: str | None, hook_id: str) -> None:
    """Give a webhook a new signing secret and print it once."""
    from orchestrator.storage.secret_box import secret_box
    from orchestrator.work.webhooks import rotate_secret

    box = secret_box(current_settings())
    secret = _change_hook(hook_id, tenant, lambda session, hook: rotate_secret(session, hook, box))
    click.echo(secret)
    click.echo(f"new signing secret of webhook {hook_id}; it is not shown again", err=True)


@webhooks_group.command("redeliver")
@click.argument("delivery_id", type=int)
@click.pass_obj
def webhooks_redeliver(tenant: str | None, delivery_id: int) -> None:
    """Send a delivery again, now, with a fresh budget of attempts."""
    from orchestrator.errors import NotFound
    from orchestrator.work.webhooks import redeliver

    wiring = open_wiring()
    try:
        with wiring.sessions.begin() as session:
            try:
                redeliver(session, delivery_id, tenant=tenant)
            except NotFound as exc:
                raise Failure(f"no webhook delivery {delivery_id}; `workyard webhooks` shows them") from exc
    finally:
        wiring.close()
    click.echo(f"delivery {delivery_id} is due again")


@webhooks_group.command("rekey")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def webhooks_rekey(tenant: str | None, batch_size: int) -> None:
    """Re-encrypt every stored webhook secret with the first key of WORKYARD_SECRET_KEY, a batch
    per transaction. Run it after putting a new key first (on every API and orchestrator too);
    once it has succeeded the old key may go. Safe to run again."""
    from orchestrator.storage.secret_box import SecretKeyError, secret_box
    from orchestrator.work.webhooks import Rekeyed, rekey, stored_secrets

    if tenant is not None:
        raise Failure(
            "rekey re-encrypts every tenant's webhook secrets (the key is not a tenant's): leave out --tenant"
        )
    try:
        box = secret_box(current_settings())
    except SecretKeyError as exc:
        raise Failure(str(exc)) from exc
    wiring = open_wiring()
    total = Rekeyed()
    try:
        with wiring.sessions() as session:
            stored = stored_secrets(session)
        while True:
            with wiring.sessions.begin() as session:
                batch = rekey(session, box, after=total.last_id, limit=batch_size)
            if not batch.seen:
                break
            total.seen += batch.seen
            total.reencrypted += batch.reencrypted
            total.current += batch.current
            total.undecryptable += batch.undecryptable
            total.last_id = batch.last_id
            click.echo(f"rekeyed {total.reencrypted + total.current} of {stored}")
    finally:
        wiring.close()
    click.echo(
        f"{total.reencrypted} secret(s) re-encrypted with the first key, {total.current} already were, "
        f"{len(total.undecryptable)} left as they were"
    )
    if total.undecryptable:
        ids = ", ".join(total.undecryptable)
        raise Failure(
            f"the secret of webhook(s) {ids} does not decrypt with any key in WORKYARD_SECRET_KEY; "
            "they were left unchanged. Add the key they were encrypted with (after the first) and run "
            "`workyard webhooks rekey` again, or give each a new secret with `workyard webhooks rotate-secret ID`"
        )


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to WORKYARD_DATABASE_URL (or the embedded SQLite)."""
    from orchestrator.storage.migrate import upgrade

    wiring = open_wiring(require_db=False)
    wiring.settings.data_path.mkdir(parents=True, exist_ok=True)
    upgrade(wiring.engine)
    click.echo(f"database at {wiring.engine.url.render_as_string(hide_password=True)} is up to date")
