"""An agent that works items through workyard's MCP server: claim_next, start, heartbeat, complete.

Over streamable HTTP, straight to the API's ``/mcp``::

    python -m examples.mcp_agent --http http://127.0.0.1:8700/mcp --token "$TOKEN" --until-idle

Over stdio, launching ``workyard mcp`` (which relays to the API at ``--api-url``) as an MCP host
would::

    python -m examples.mcp_agent --stdio --api-url http://127.0.0.1:8700 --token "$TOKEN" --until-idle

The token is an agent's (``workyard token create --principal agent:summarizer-1 --tenant acme
--scope work:read --scope work:claim --capability summarize``); ``WORKYARD_TOKEN`` works too.
Its "summary" of an item is trivial (the payload's fields and sizes): a real agent would hand the
payload to a model here, heartbeating meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

log = logging.getLogger("mcp_agent")


class ToolFailed(Exception):
    """A tool answered with workyard's error: its code (conflict, not_found, ...) and message."""

    def __init__(self, tool: str, error: dict[str, Any]):
        super().__init__(f"{tool}: {error.get('code')}: {error.get('message')}")
        self.code = str(error.get("code"))


def summarize(payload: dict[str, Any]) -> str:
    """Stands for the model call: one line naming each field of the payload and its size."""
    parts = [f"{key} ({len(value) if isinstance(value, str | list | dict) else 1})" for key, value in payload.items()]
    return "fields: " + (", ".join(parts) or "none")


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    """A tool's structured result; a tool error raises :class:`ToolFailed`."""
    result: CallToolResult = await client.call_tool(tool, arguments)
    if result.is_error:
        error = result.structured_content.get("error", {}) if isinstance(result.structured_content, dict) else {}
        raise ToolFailed(tool, error or {"code": "error", "message": str(result.content)})
    return result.structured_content


async def heartbeats(
    client: Client, item: dict[str, Any], every_s: float, stop: anyio.Event, progress: dict[str, Any]
) -> None:
    """Extend the lease every ``every_s`` until ``stop``; a lost lease ends the beats (the final
    complete then fails with a conflict, which is the signal to drop the work)."""
    while not stop.is_set():
        with anyio.move_on_after(every_s):
            await stop.wait()
        if stop.is_set():
            return
        try:
            await call(
                client, "heartbeat", item_id=item["id"], lease_epoch=item["lease_epoch"], progress=dict(progress)
            )
        except ToolFailed as exc:
            log.warning("lost the lease on %s: %s", item["id"], exc)
            return


async def work_one(client: Client, item: dict[str, Any], ttl_s: float) -> bool:
    """Start (or resume), work (heartbeating) and complete one claimed item; False if the lease
    was lost before it was done (someone else may have the work now)."""
    item = await call(client, "start", item_id=item["id"], lease_epoch=item["lease_epoch"])
    stop = anyio.Event()
    async with anyio.create_task_group() as beating:
        # What the beats report: it changes only as the work moves on (a counter of beats would hide
        # a stuck agent from workyard's stall detection).
        progress: dict[str, Any] = {"stage": "summarizing"}
        beating.start_soon(heartbeats, client, item, ttl_s / 3, stop, progress)
        try:
            summary = summarize(item.get("payload") or {})
        finally:
            stop.set()
    try:
        await call(client, "complete", item_id=item["id"], lease_epoch=item["lease_epoch"], result={"summary": summary})
    except ToolFailed as exc:
        if exc.code != "conflict":
            raise
        log.warning("%s was lost before it was completed: %s", item["id"], exc)
        return False
    log.info("completed %s: %s", item["id"], summary)
    return True


async def work(client: Client, *, max_items: int | None, until_idle: bool, ttl_s: float, poll_s: float) -> int:
    """Claim and work items until ``max_items`` are done, or (``until_idle``) none is offered.
    claim_next hands out only items the agent can start or resume now."""
    done = 0
    while max_items is None or done < max_items:
        claimed: dict[str, Any] | None = (await call(client, "claim_next", ttl_s=ttl_s))["result"]
        if claimed is None:
            if until_idle:
                break
            await anyio.sleep(poll_s)
            continue
        if await work_one(client, claimed, ttl_s):
            done += 1
    return done


@asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[Client]:
    """An MCP session over streamable HTTP (``--http``) or stdio (``--stdio``)."""
    if args.stdio:
        # The token travels in the environment, not on a command line that `ps` shows.
        env = {"WORKYARD_TOKEN": args.token, "WORKYARD_URL": args.api_url}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        server = StdioServerParameters(command=sys.executable, args=["-m", "orchestrator.cli", "mcp"], env=env)
        async with Client(stdio_client(server)) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}"}, timeout=30) as http,
        Client(streamable_http_client(args.http, http_client=http)) as client,
    ):
        yield client


async def main_async(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        return await work(
            client, max_items=args.max_items, until_idle=args.until_idle, ttl_s=args.ttl_s, poll_s=args.poll_s
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--http", metavar="URL", help="the API's MCP endpoint, e.g. http://127.0.0.1:8700/mcp")
    how.add_argument("--stdio", action="store_true", help="launch `workyard mcp` and talk to it over stdio")
    parser.add_argument("--api-url", default="http://127.0.0.1:8700", help="with --stdio: the API it relays to")
    parser.add_argument("--token", default=os.environ.get("WORKYARD_TOKEN"), help="an agent's token (WORKYARD_TOKEN)")
    parser.add_argument("--max-items", type=int, default=None, help="stop after this many items")
    parser.add_argument("--until-idle", action="store_true", help="stop when nothing is offered")
    parser.add_argument("--ttl-s", type=float, default=60.0, help="the lease asked for each claim")
    parser.add_argument("--poll-s", type=float, default=2.0, help="wait between empty claims")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("pass --token or set WORKYARD_TOKEN")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse(argv)
    done = anyio.run(main_async, args)
    print(f"worked {done} item(s)")


if __name__ == "__main__":
    main()
