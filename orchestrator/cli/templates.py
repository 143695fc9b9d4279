"""``workyard template``: register, list and show saga templates, over the API."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.base import Failure, main
from orchestrator.cli.consumers import idle_capabilities
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, segment


@main.group()
def template() -> None:
    """Register and list saga templates (over the API: --url/--token, WORKYARD_URL/WORKYARD_TOKEN)."""


@template.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@over_api
def template_add(api: Api, file: Path, as_json: bool) -> None:
    """Register a template from a YAML or JSON file, as the token's tenant's own (an operator's
    token: shared, every tenant may run it). Warns of a capability no live worker consumes."""
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise Failure(f"{file} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise Failure(f"{file} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Failure(f"{file} does not hold a template (a mapping with name, version and steps)")
    response = api.send("POST", "/api/v1/templates", json=data)
    stored = response.json()
    if as_json:
        echo_json(stored)
    else:
        owner = "shared" if stored["tenant"] == "*" else f"of tenant {stored['tenant']}"
        verb = "registered" if response.status_code == 201 else "was already registered"
        click.echo(f"template {stored['name']} {stored['version']} ({owner}) {verb}")
    capabilities = sorted({s["capability"] for s in stored["spec"]["steps"] if s.get("capability")})
    for why in idle_capabilities(api, capabilities).values():
        click.echo(f"warning: {why}; its steps wait in the queue until one runs", err=True)


@template.command("list")
@json_option
@over_api
def template_list(api: Api, as_json: bool) -> None:
    """The templates the token's tenant may run: its own and the shared ones."""
    rows = api.get("/api/v1/templates")
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no templates")
    for row in rows:
        owner = "shared" if row["tenant"] == "*" else f"tenant {row['tenant']}"
        click.echo(f"{row['name']} {row['version']}  ({len(row['spec']['steps'])} steps, {owner})")


@template.command("show")
@click.argument("name")
@click.argument("version", required=False)
@over_api
def template_show(api: Api, name: str, version: str | None) -> None:
    """A template as registered (its highest version, or VERSION), as JSON."""
    echo_json(api.get(f"/api/v1/templates/{segment(name)}" + (f"/{segment(version)}" if version else "")))
