"""``workyard webhooks``: the webhook delivery log and the webhooks themselves, over the API (the
token's tenant's; an all-tenant token's: every tenant's). Only ``rekey`` opens the database: it
re-encrypts stored secrets with a key the API never hands out."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.base import Failure, current_settings, main, open_wiring
from orchestrator.cli.remote import Api, connect, echo_json, json_option, over_api, segment, when


@main.group("webhooks", invoke_without_command=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500), help="The most deliveries.")
@click.option("--webhook", "webhook_id", default=None, help="Only this webhook's deliveries.")
@json_option
@click.option("--token", envvar="WORKYARD_TOKEN", default=None, help="Bearer token (without a command).")
@click.option("--url", envvar="WORKYARD_URL", default=None, help="The workyard API (without a command).")
@click.pass_context
def webhooks_group(
    ctx: click.Context, limit: int, webhook_id: str | None, as_json: bool, token: str | None, url: str | None
) -> None:
    """The webhook delivery log, newest first: event, state, attempts, last answer (without a
    command); and the webhooks themselves (list, show, delete, disable, enable, rotate-secret,
    redeliver, rekey), each with its own --url/--token (WORKYARD_URL/WORKYARD_TOKEN)."""
    if ctx.invoked_subcommand is not None:
        return  # the command connects, if it talks to the API at all (rekey opens the database)
    api = connect(url, token)
    try:
        _deliveries(api, limit, webhook_id, as_json)
    finally:
        api.close()


@webhooks_group.command("deliveries")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500), help="The most deliveries.")
@click.option("--webhook", "webhook_id", default=None, help="Only this webhook's deliveries.")
@json_option
@over_api
def webhooks_deliveries(api: Api, limit: int, webhook_id: str | None, as_json: bool) -> None:
    """The delivery log, newest first."""
    _deliveries(api, limit, webhook_id, as_json)


def _deliveries(api: Api, limit: int, webhook_id: str | None, as_json: bool) -> None:
    rows = api.get("/api/v1/webhooks/deliveries", limit=limit, webhook_id=webhook_id)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no webhook deliveries (register webhooks with POST /api/v1/webhooks)")
    for d in rows:
        answer = d["last_error"] or (f"HTTP {d['last_status']}" if d["last_status"] else "-")
        click.echo(
            f"{d['id']:>6}  {when(d['created_at'])}  {d['event']:<24} {d['state']:<9} "
            f"attempts={d['attempts']}  {answer[:60]}  {d['url']}"
        )


def _hook_line(hook: dict[str, Any]) -> str:
    state = "disabled" if hook["disabled_at"] else "enabled"
    return f"{hook['id']}  tenant={hook['tenant']}  {state:<8}  events={','.join(hook['events'])}  {hook['url']}"


@webhooks_group.command("list")
@json_option
@over_api
def webhooks_list(api: Api, as_json: bool) -> None:
    """Registered webhooks (never their secrets)."""
    rows = api.get("/api/v1/webhooks")
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no webhooks")
    for hook in rows:
        click.echo(_hook_line(hook))


@webhooks_group.command("show")
@click.argument("hook_id")
@over_api
def webhooks_show(api: Api, hook_id: str) -> None:
    """One webhook, as JSON (never its secret)."""
    echo_json(api.get(f"/api/v1/webhooks/{segment(hook_id)}"))


@webhooks_group.command("delete")
@click.argument("hook_id")
@over_api
def webhooks_delete(api: Api, hook_id: str) -> None:
    """Delete a webhook: it hears nothing more, its secret is wiped, its pending deliveries fail."""
    api.call("DELETE", f"/api/v1/webhooks/{segment(hook_id)}")
    click.echo(f"deleted webhook {hook_id}")


@webhooks_group.command("disable")
@click.argument("hook_id")
@over_api
def webhooks_disable(api: Api, hook_id: str) -> None:
    """Stop a webhook; its pending deliveries wait until it is enabled."""
    click.echo("disabled " + _hook_line(api.post(f"/api/v1/webhooks/{segment(hook_id)}/disable")))


@webhooks_group.command("enable")
@click.argument("hook_id")
@over_api
def webhooks_enable(api: Api, hook_id: str) -> None:
    """Start a disabled webhook again."""
    click.echo("enabled " + _hook_line(api.post(f"/api/v1/webhooks/{segment(hook_id)}/enable")))


@webhooks_group.command("rotate-secret")
@click.argument("hook_id")
@over_api
def webhooks_rotate_secret(api: Api, hook_id: str) -> None:
    """Give a webhook a new signing secret and print it once."""
    hook = api.post(f"/api/v1/webhooks/{segment(hook_id)}/rotate-secret")
    click.echo(hook["secret"])
    click.echo(f"new signing secret of webhook {hook_id}; it is not shown again", err=True)


@webhooks_group.command("redeliver")
@click.argument("delivery_id", type=click.IntRange(1, 2**63 - 1))
@json_option
@over_api
def webhooks_redeliver(api: Api, delivery_id: int, as_json: bool) -> None:
    """Send a delivery again, now, with a fresh budget of attempts."""
    delivery = api.post(f"/api/v1/webhooks/deliveries/{delivery_id}/redeliver")
    if as_json:
        echo_json(delivery)
        return
    click.echo(f"delivery {delivery_id} is due again")


@webhooks_group.command("rekey")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10_000))
def webhooks_rekey(batch_size: int) -> None:
    """Re-encrypt every stored webhook secret with the first key of WORKYARD_SECRET_KEY, a batch
    per transaction (on the database: the key is the operator's, not the API's to hand out). Run
    it after putting a new key first (on every API and orchestrator too); once it has succeeded
    the old key may go. Safe to run again."""
    from orchestrator.storage.secret_box import SecretKeyError, secret_box
    from orchestrator.work.webhooks import Rekeyed, rekey, stored_secrets

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
