"""``workyard mcp``: workyard's MCP server over stdio, for an agent's host to launch.

It relays every tool call to a running workyard API with one token, so the host needs a URL and
a token, never the database's credentials. Without ``--url`` and ``--token`` (or WORKYARD_URL and
WORKYARD_TOKEN) it uses the stack of the data dir: its API address and its admin token.
"""

from __future__ import annotations

import click

from orchestrator.cli.base import Failure, current_settings, main


@main.command("mcp")
@click.option(
    "--url",
    envvar="WORKYARD_URL",
    default=None,
    help="The workyard API to relay to (env WORKYARD_URL; default: WORKYARD_API_HOST:WORKYARD_API_PORT, "
    "http://127.0.0.1:8700).",
)
@click.option(
    "--token",
    envvar="WORKYARD_TOKEN",
    default=None,
    help="Bearer token from `workyard token create` (env WORKYARD_TOKEN; default: the data dir's admin-token, "
    "which `workyard up` writes).",
)
def mcp(url: str | None, token: str | None) -> None:
    """Serve the MCP tools (claim, heartbeat, complete, ... and sagas) over stdin/stdout."""
    from orchestrator.mcp.proxy import serve_stdio

    settings = current_settings()
    if token is None:
        path = settings.data_path / "admin-token"
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Failure(
                f"no token: pass --token or set WORKYARD_TOKEN (a token from `workyard token create`); "
                f"{path} (written by `workyard up`) cannot be read: {exc.strerror or exc}"
            ) from exc
        # Fine for trying it on the embedded stack; an agent's host should hold a token of its own.
        click.echo(
            f"workyard mcp: using the operator's token in {path} (every tenant, every scope); give an agent "
            "its own with `workyard token create` and pass it with --token or WORKYARD_TOKEN",
            err=True,
        )
    if not token:
        raise Failure("the token is empty: pass --token or set WORKYARD_TOKEN")
    serve_stdio(url or settings.api_url, token)
