"""``workyard item``: work items as the token's holder sees and works them, over the API."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.cli.base import Failure, main
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, pages, segment, when


@main.group()
def item() -> None:
    """List, show, claim, start and complete work items (over the API: --url/--token)."""


def _line(row: dict[str, Any]) -> str:
    claim = row.get("claim")
    holder = f"{claim['type']}:{claim['id']}" if claim else "unclaimed"
    return (
        f"{row['id']}  {row['status']:<12} {row['type']:<14} p{row['priority']:<3} {holder:<22} "
        f"{when(row['created_at'])}  {row['title']}"
    )


@item.command("list")
@click.option("--status", default=None, help="Only items in this status.")
@click.option("--type", "type_", default=None, help="Only items of this work-item type.")
@click.option("--label", default=None, help="Only items that carry this label.")
@click.option("--assignee", default=None, help="Only items assigned to user:<id> or agent:<id>.")
@click.option("--tenant", default=None, help="Only this tenant's items (an operator's token).")
@click.option("--saga", "saga_id", default=None, help="Only the items a saga's steps wait on.")
@click.option("--available", is_flag=True, help="Only what the token's holder may claim now (its queue), best first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@over_api
def item_list(
    api: Api,
    status: str | None,
    type_: str | None,
    label: str | None,
    assignee: str | None,
    tenant: str | None,
    saga_id: str | None,
    available: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Work items, newest first (with --available: the caller's queue, best first)."""
    if available:
        if any(v is not None for v in (status, assignee, tenant, saga_id)):
            raise Failure("--available takes --type and --label only: it is the caller's own queue")
        items = list(pages(api, "/api/v1/queues/available", limit, type=type_, label=label))
    else:
        filters = {"status": status, "type": type_, "label": label, "assignee": assignee, "tenant": tenant}
        items = list(pages(api, "/api/v1/work-items", limit, saga_id=saga_id, **filters))
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no work items")
    for row in items:
        click.echo(_line(row))


@item.command("show")
@click.argument("item_id")
@json_option
@over_api
def item_show(api: Api, item_id: str, as_json: bool) -> None:
    """One work item: status, holder and lease, offer, payload, result."""
    row = api.get(f"/api/v1/work-items/{segment(item_id)}")
    if as_json:
        echo_json(row)
        return
    click.echo(_line(row))
    if row.get("description"):
        click.echo(f"  {row['description']}")
    claim = row.get("claim")
    if claim:
        click.echo(
            f"  held by {claim['type']}:{claim['id']} since {when(claim['at'])}, lease epoch {claim['lease_epoch']}, "
            f"lease until {when(claim.get('lease_expires_at'))} ({claim['state']})"
        )
    if row.get("offer"):
        click.echo(f"  offered to {json.dumps(row['offer'])}")
    if row.get("saga"):
        link = row["saga"]
        click.echo(f"  saga {link['saga_id']} waits on it at step {link['step']} ({link['phase']})")
    click.echo(f"  payload {json.dumps(row['payload'])}")
    if row.get("result") is not None:
        click.echo(f"  result {json.dumps(row['result'])}")
    if row.get("reason"):
        click.echo(f"  reason: {row['reason']}")


@item.command("claim")
@click.argument("item_id", required=False)
@click.option("--next", "take_next", is_flag=True, help="Claim the best item offered to the caller instead.")
@click.option("--ttl", "ttl_s", type=float, default=None, help="Lease seconds (default: the item type's).")
@json_option
@over_api
def item_claim(api: Api, item_id: str | None, take_next: bool, ttl_s: float | None, as_json: bool) -> None:
    """Claim ITEM_ID (or --next: the best item offered to the token's holder)."""
    if take_next == (item_id is not None):
        raise Failure("name an item to claim, or pass --next (not both)")
    body = {"ttl_s": ttl_s} if ttl_s is not None else {}
    if take_next:
        response = api.send("POST", "/api/v1/queues/claim-next", json=body)
        if response.status_code == 204:
            click.echo("nothing to claim: no item is offered to this token's holder now", err=True)
            return
        row = response.json()
    else:
        row = api.post(f"/api/v1/work-items/{segment(item_id or '')}/claim", body)
    _held(row, "claimed", as_json)


def _held(row: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        echo_json(row)
        return
    claim = row.get("claim") or {}
    click.echo(
        f"{verb} {row['id']} ({row['status']}), lease epoch {row['lease_epoch']}, "
        f"lease until {when(claim.get('lease_expires_at'))}"
    )


def _epoch(api: Api, item_id: str, given: int | None) -> int:
    """The lease epoch to act under: the one given, else the item's latest claim (the API still
    checks that the caller is its holder)."""
    if given is not None:
        return given
    return int(api.get(f"/api/v1/work-items/{segment(item_id)}")["lease_epoch"])


_EPOCH = click.option(
    "--lease-epoch", type=int, default=None, help="The epoch your claim answered (default: the item's latest)."
)


@item.command("start")
@click.argument("item_id")
@_EPOCH
@json_option
@over_api
def item_start(api: Api, item_id: str, lease_epoch: int | None, as_json: bool) -> None:
    """Start the work on a claimed item (or take over one whose holder vanished)."""
    body = {"lease_epoch": lease_epoch} if lease_epoch is not None else None
    _held(api.post(f"/api/v1/work-items/{segment(item_id)}/start", body), "started", as_json)


@item.command("complete")
@click.argument("item_id")
@click.option("--result", "result_json", default="null", help="The result as JSON (what a waiting saga gets).")
@click.option("--cost", type=float, default=None, help="What the work cost, in the holder's budget unit.")
@_EPOCH
@json_option
@over_api
def item_complete(
    api: Api, item_id: str, result_json: str, cost: float | None, lease_epoch: int | None, as_json: bool
) -> None:
    """Complete a held item with its result."""
    try:
        result = json.loads(result_json)
    except json.JSONDecodeError as exc:
        raise Failure(f"--result is not valid JSON: {exc}") from exc
    body: dict[str, Any] = {"lease_epoch": _epoch(api, item_id, lease_epoch), "result": result}
    if cost is not None:
        body["cost"] = cost
    row = api.post(f"/api/v1/work-items/{segment(item_id)}/complete", body)
    if as_json:
        echo_json(row)
        return
    click.echo(f"completed {row['id']} ({row['status']})")


@item.command("history")
@click.argument("item_id")
@json_option
@over_api
def item_history(api: Api, item_id: str, as_json: bool) -> None:
    """A work item's audit trail, oldest first: what happened, who did it, why."""
    events = api.get(f"/api/v1/work-items/{segment(item_id)}/history")
    if as_json:
        echo_json(events)
        return
    for event in events:
        moved = f" {event['from_status']} -> {event['to_status']}" if event.get("to_status") else ""
        why = f": {event['reason']}" if event.get("reason") else ""
        click.echo(f"{when(event['at'])}  {event['actor']:<24} {event['action']}{moved}{why}")
