"""``workyard template``: register and list saga templates."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from orchestrator.cli.base import Failure, main, open_wiring

# -- templates and database ----------------------------------------------------------------------


@main.group()
def template() -> None:
    """Register and list saga templates."""


@template.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tenant", default="*", show_default=True, help="The tenant that owns it ('*': shared, every tenant may run it)."
)
def template_add(file: Path, tenant: str) -> None:
    """Register a template from a YAML or JSON file."""
    from orchestrator.sagas.templates import parse_template, register_template

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise Failure(f"{file} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise Failure(f"{file} is not valid YAML/JSON: {exc}") from exc
    spec = parse_template(data)
    wiring = open_wiring()
    _, created = register_template(wiring.sessions, spec, tenant=tenant)
    owner = "shared" if tenant == "*" else f"of tenant {tenant}"
    click.echo(
        f"template {spec.name} {spec.version} ({owner}) " + ("registered" if created else "was already registered")
    )


@template.command("list")
def template_list() -> None:
    from orchestrator.sagas.templates import list_templates

    wiring = open_wiring()
    with wiring.sessions() as session:
        for row in list_templates(session):
            owner = "shared" if row.tenant == "*" else f"tenant {row.tenant}"
            click.echo(f"{row.name} {row.version}  ({len(row.spec['steps'])} steps, {owner})")
