"""``workyard catalog``: the work-item template catalog (register, list, show, instantiate), over the API."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.base import Failure, main
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, segment

BASE = "/api/v1/work-item-templates"


@main.group()
def catalog() -> None:
    """Work-item templates: the catalog of standard work (over the API: --url/--token,
    WORKYARD_URL/WORKYARD_TOKEN)."""


@catalog.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@over_api
def catalog_add(api: Api, file: Path, as_json: bool) -> None:
    """Register a work-item template from a YAML or JSON file in the token's tenant's catalog (an
    operator's token: shared with every tenant)."""
    response = api.send("POST", BASE, json=_mapping(file, "a work-item template (name, version, type, item)"))
    stored = response.json()
    if as_json:
        echo_json(stored)
        return
    owner = "shared" if stored["tenant"] == "*" else f"of tenant {stored['tenant']}"
    verb = "registered" if response.status_code == 201 else "was already registered"
    click.echo(f"{stored['id']} ({owner}) {verb}")
    if not stored["schemaChecked"]:
        click.echo(
            "note: not checked against the type's JSON Schema: give each parameter the item uses a default "
            "or an example to have it checked at registration",
            err=True,
        )


@catalog.command("list")
@json_option
@over_api
def catalog_list(api: Api, as_json: bool) -> None:
    """The latest release of each template the token's tenant can instantiate."""
    rows = api.get(BASE)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no work-item templates")
    for row in rows:
        owner = "shared" if row["tenant"] == "*" else f"tenant {row['tenant']}"
        title = f"  {row['title']}" if row.get("title") else ""
        click.echo(f"{row['name']} {row['version']}  ({row['type']}, {owner}){title}")


@catalog.command("show")
@click.argument("name")
@click.option("--version", help="A version (default: the latest release).")
@click.option("--versions", "all_versions", is_flag=True, help="Every version, with its migration notes.")
@over_api
def catalog_show(api: Api, name: str, version: str | None, all_versions: bool) -> None:
    """A template as it applies (what it extends merged in), as JSON."""
    if all_versions:
        echo_json(api.get(f"{BASE}/{segment(name)}/versions"))
        return
    echo_json(api.get(f"{BASE}/{segment(name)}", params={"version": version} if version else None))


@catalog.command("instantiate")
@click.argument("name")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter; VALUE as JSON if it parses, else text.",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Parameters from a YAML or JSON file.",
)
@click.option("--version", help="A version (default: the latest release).")
@click.option("--key", "idempotence_key", help="An idempotence key: a retry with it answers the same items.")
@click.option("--tenant", help="The items' tenant (an all-tenant token must name one).")
@json_option
@over_api
def catalog_instantiate(
    api: Api,
    name: str,
    params: tuple[str, ...],
    params_file: Path | None,
    version: str | None,
    idempotence_key: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Create the template's items (and start its workflow) with these parameters."""
    values: dict[str, Any] = _mapping(params_file, "parameters (a mapping)") if params_file else {}
    for pair in params:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise Failure(f"--param {pair!r}: write NAME=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    body: dict[str, Any] = {"parameters": values}
    if version:
        body["version"] = version
    if idempotence_key:
        body["idempotence_key"] = idempotence_key
    if tenant:
        body["tenant"] = tenant
    response = api.send("POST", f"{BASE}/{segment(name)}/instantiate", json=body)
    done = response.json()
    if as_json:
        echo_json(done)
        return
    verb = "created" if done["created"] else "already created"
    for item in done["items"]:
        click.echo(f"{item['id']}  {item['type']}  {item['status']}  {item['title']}  ({verb})")
    if done.get("sagaId"):
        click.echo(f"workflow saga {done['sagaId']}")


def _mapping(file: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise Failure(f"{file} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise Failure(f"{file} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Failure(f"{file} does not hold {what}")
    return {str(k): _as_json(v) for k, v in data.items()}


def _as_json(value: Any) -> Any:
    """YAML reads an unquoted 2026-12-06 as a date: the API takes ISO 8601 text."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
