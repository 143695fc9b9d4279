"""``workyard template pause|resume``, ``workyard capability pause|resume`` and ``workyard pauses``:
an operator's pauses of a template or a capability queue, over the API."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.base import main
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, segment, when
from orchestrator.cli.templates import template

_REASON = click.option("--reason", required=True, help="Why: kept with the pause and in its audit trail.")
_TENANT = click.option(
    "--tenant",
    default=None,
    help="Whose sagas (an all-tenants token only; left out: the token's tenant, * for an all-tenants token).",
)


def _whose(tenant: str) -> str:
    return "every tenant" if tenant == "*" else f"tenant {tenant}"


def _act(api: Api, path: str, action: str, reason: str, tenant: str | None, as_json: bool) -> None:
    body: dict[str, Any] = {"reason": reason}
    if tenant is not None:
        body["tenant"] = tenant
    done = api.post(f"{path}/{action}", body)
    if as_json:
        echo_json(done)
        return
    pause = done["pause"]
    what = f"{pause['kind']} {pause['name']} ({_whose(pause['tenant'])})"
    if done["resumed"]:
        click.echo(f"{what} resumed: {done['sent']} held dispatch(es) sent")
    else:
        click.echo(f"{what} paused: nothing new is dispatched for it until `resume`")


@template.command("pause")
@click.argument("name")
@_REASON
@_TENANT
@json_option
@over_api
def template_pause(api: Api, name: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Dispatch nothing new for the steps of template NAME (its sagas wait, their clocks stopped;
    new sagas of it are taken and wait)."""
    _act(api, f"/api/v1/templates/{segment(name)}", "pause", reason, tenant, as_json)


@template.command("resume")
@click.argument("name")
@_REASON
@_TENANT
@json_option
@over_api
def template_resume(api: Api, name: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Send what the pause of template NAME held, oldest first."""
    _act(api, f"/api/v1/templates/{segment(name)}", "resume", reason, tenant, as_json)


@main.group()
def capability() -> None:
    """Pause and resume a capability queue (over the API: --url/--token, WORKYARD_URL/WORKYARD_TOKEN)."""


@capability.command("pause")
@click.argument("capability_name", metavar="CAPABILITY")
@_REASON
@_TENANT
@json_option
@over_api
def capability_pause(api: Api, capability_name: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Dispatch nothing new onto cap.CAPABILITY (forward or compensating; messages already queued
    are still taken by its workers)."""
    _act(api, f"/api/v1/capabilities/{segment(capability_name)}", "pause", reason, tenant, as_json)


@capability.command("resume")
@click.argument("capability_name", metavar="CAPABILITY")
@_REASON
@_TENANT
@json_option
@over_api
def capability_resume(api: Api, capability_name: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Send what the pause of CAPABILITY held, oldest first."""
    _act(api, f"/api/v1/capabilities/{segment(capability_name)}", "resume", reason, tenant, as_json)


@main.group("pauses")
def pauses() -> None:
    """The pauses of templates and capabilities: those in force (list), every pause and resume (history)."""


@pauses.command("list")
@json_option
@over_api
def pauses_list(api: Api, as_json: bool) -> None:
    """The pauses in force that hold the token's tenant's sagas, oldest first."""
    rows = api.get("/api/v1/pauses")
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no pauses")
    for row in rows:
        click.echo(
            f"{row['kind']:<10} {row['name']:<24} {_whose(row['tenant']):<20} since {when(row['paused_at'])}  "
            f"{row['held']} held  {row['actor']}: {row['reason']}"
        )


@pauses.command("history")
@click.option("--kind", type=click.Choice(["template", "capability"]), default=None, help="Only of this kind.")
@click.option("--name", default=None, help="Only of this template or capability.")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="The most entries.")
@json_option
@over_api
def pauses_history(api: Api, kind: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """Every pause and resume, newest first: when, who, what, why."""
    params: dict[str, Any] = {"limit": limit}
    if kind is not None:
        params["kind"] = kind
    if name is not None:
        params["name"] = name
    rows = api.get("/api/v1/pauses/history", **params)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no pauses yet")
    for row in rows:
        sent = f" ({row['detail']['held']} held)" if row["action"] == "resume" and "held" in row["detail"] else ""
        click.echo(
            f"{when(row['at'])}  {row['actor']}  {row['action']} {row['kind']} {row['name']} "
            f"({_whose(row['tenant'])}){sent}: {row['reason']}"
        )
