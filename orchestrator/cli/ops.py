"""What an operator looks at and maintains: timers (over the API), the database."""

from __future__ import annotations

from datetime import datetime

import click

from orchestrator.cli.base import main, open_wiring
from orchestrator.cli.remote import Api, echo_json, json_option, over_api


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--due/--all", "due_only", default=False, help="Only timers and deadlines already due.")
@click.option("--kind", default=None, help="Only timers of this kind (deadline: only running attempts' deadlines).")
@click.option("--saga", "saga_id", default=None, help="Only this saga's.")
@click.option("--item", "item_id", default=None, help="Only this work item's.")
@json_option
@over_api
def timers(
    api: Api, limit: int, due_only: bool, kind: str | None, saga_id: str | None, item_id: str | None, as_json: bool
) -> None:
    """Durable timers, soonest first: retries, deadlines, SLA warnings, breaches, escalations, lease
    expiries; then the deadlines of running attempts. Every tenant's: an all-tenant token."""
    listing = api.get(
        "/api/v1/timers", limit=limit, due="true" if due_only else None, kind=kind, saga_id=saga_id, item_id=item_id
    )
    if as_json:
        echo_json(listing)
        return
    now = datetime.fromisoformat(listing["now"])
    click.echo(f"{listing['total']} timer(s), {listing['due']} due now")
    for timer in listing["timers"]:
        subject = f"saga {timer['saga_id']}" if timer["saga_id"] else f"item {timer['item_id']}"
        due_at = datetime.fromisoformat(timer["due_at"])
        click.echo(f"  {_when(due_at, now)}  {timer['kind']:<14} {subject}  {timer['payload'] or ''}")
    click.echo(f"{listing['watched']} running attempt(s) with a deadline, {listing['late']} past it")
    for attempt in listing["deadlines"]:
        click.echo(
            f"  {_when(datetime.fromisoformat(attempt['deadline_at']), now)}  {'deadline':<14} saga "
            f"{attempt['saga_id']}  step {attempt['step_name']} {attempt['phase']} attempt {attempt['attempt']}"
        )


def _when(due_at: datetime, now: datetime) -> str:
    seconds = (due_at - now).total_seconds()
    return f"{due_at:%Y-%m-%d %H:%M:%S}  " + (f"in {seconds:8.1f} s" if seconds >= 0 else f"{-seconds:7.1f} s late")


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
