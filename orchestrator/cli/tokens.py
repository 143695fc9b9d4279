"""``workyard token``: API tokens for people, agents and upstream systems."""

from __future__ import annotations

import click

from orchestrator.cli.base import Failure, main, open_wiring


@main.group()
def token() -> None:
    """API tokens for people, agents and upstream systems."""


@token.command("create")
@click.option("--principal", required=True, help="user:<id> or agent:<id>.")
@click.option("--tenant", required=True, help="The tenant the token acts in ('*' for all: operators only).")
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat: work:read, work:write, work:claim, …")
@click.option("--group", "groups", multiple=True, help="Groups the principal is in (offers to a group).")
@click.option("--capability", "capabilities", multiple=True, help="An agent's capabilities (offers to agents).")
@click.option("--description", default="", help="What the token is for.")
def token_create(
    principal: str,
    tenant: str,
    scopes: tuple[str, ...],
    groups: tuple[str, ...],
    capabilities: tuple[str, ...],
    description: str,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from models.principal import parse_principal
    from orchestrator.work.tokens import create_token

    try:
        kind, ident = parse_principal(principal)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--principal") from exc
    wiring = open_wiring()
    try:
        with wiring.sessions.begin() as session:
            issued = create_token(
                session,
                principal_type=kind,
                principal_id=ident,
                tenant=tenant,
                scopes=scopes,
                groups=groups,
                capabilities=capabilities,
                description=description,
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    finally:
        wiring.close()
    click.echo(issued.secret)
    click.echo(f"token {issued.id} for {principal} in tenant {tenant}; it is not shown again", err=True)


@token.command("list")
def token_list() -> None:
    """Tokens (never their secrets)."""
    from orchestrator.work.tokens import list_tokens

    wiring = open_wiring()
    with wiring.sessions() as session:
        for row in list_tokens(session):
            state = "revoked" if row.revoked_at else "active"
            click.echo(
                f"{row.id}  {row.principal_type}:{row.principal_id}  tenant={row.tenant}  "
                f"scopes={','.join(row.scopes)}  groups={','.join(row.groups) or '-'}  {state}"
            )
    wiring.close()


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (it stops working within seconds)."""
    from orchestrator.work.tokens import revoke_token

    wiring = open_wiring()
    try:
        with wiring.sessions.begin() as session:
            if not revoke_token(session, token_id):
                raise Failure(f"no active token {token_id!r}; `workyard token list` shows them")
    finally:
        wiring.close()
    click.echo(f"revoked {token_id}")
