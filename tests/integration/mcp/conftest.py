"""The API with ``/mcp`` served by a real uvicorn (SQLite and PostgreSQL: the parent conftest's
module-scoped ``backend``), tokens to call it with, and MCP clients from the SDK over both
transports: streamable HTTP to ``/mcp``, and stdio to ``workyard mcp`` launched as a subprocess
that relays to the same API."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from config.settings import Settings
from models.principal import parse_principal
from models.work_api import WorkItemRead
from orchestrator.api.app import create_app
from orchestrator.service.wiring import Wiring
from orchestrator.storage.migrate import upgrade
from orchestrator.work.tokens import create_token
from tests.conftest import database_url
from tests.integration.harness import serving
from tests.support import ROOT, RedisTarget
from workers.client import WorkyardClient

TRANSPORTS = ["http", "stdio"]
# What a result larger than this is refused with (payload_too_large), in both transports.
MAX_PAYLOAD_BYTES = 2048


@dataclass
class Served:
    """A running API: its base URL and its wiring (to make tokens and read rows)."""

    url: str
    app: FastAPI
    tmp: Path

    @property
    def wiring(self) -> Wiring:
        wiring: Wiring = self.app.state.wiring
        return wiring

    def token(
        self,
        principal: str,
        *,
        scopes: tuple[str, ...] = ("work:read", "work:claim"),
        tenant: str = "acme",
        capabilities: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
    ) -> str:
        kind, ident = parse_principal(principal)
        with self.wiring.sessions.begin() as session:
            issued = create_token(
                session,
                principal_type=kind,
                principal_id=ident,
                tenant=tenant,
                scopes=scopes,
                groups=groups,
                capabilities=capabilities,
            )
        return issued.secret

    def create_item(self, capability: str, *, tenant: str = "acme", **fields: Any) -> WorkItemRead:
        """A task offered to agents with ``capability``, created over HTTP by a person of ``tenant``."""
        writer = self.token("user:writer", scopes=("work:read", "work:write"), tenant=tenant)
        body = {
            "type": "task",
            "title": f"summarize for {capability}",
            "description": "one line will do",
            "payload": {"doc": "INC-7", "lines": ["a", "b"]},
            "offer": {"type": "agent", "capability": capability},
            **fields,
        }
        with WorkyardClient(self.url, writer) as client:
            return client.create_work_item(body)


@pytest.fixture(scope="module")
def served(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"mcp-{backend}")
    for url in database_url(backend, tmp):
        settings = Settings(
            database_url=url,
            data_dir=tmp,
            # A real broker: submit_saga publishes the saga's first step (no worker takes it here).
            broker_url=redis_target.broker_url,
            redis_url=redis_target.redis_url,
            work_lease_ttl_s=30,
            work_item_max_payload_bytes=MAX_PAYLOAD_BYTES,
        )
        app = create_app(settings)
        upgrade(app.state.wiring.engine)
        with serving(app) as url:
            yield Served(url=url, app=app, tmp=tmp)


class Mcp:
    """An MCP client session from the SDK, driven from synchronous test code through a portal."""

    def __init__(self, portal: BlockingPortal, client: Client):
        self.portal = portal
        self.client = client

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return self.portal.call(partial(self.client.call_tool, tool, arguments))

    def ok(self, tool: str, **arguments: Any) -> Any:
        """The structured content of a call that must succeed."""
        result = self.call(tool, **arguments)
        assert not result.is_error, f"{tool} failed: {result.content}"
        return result.structured_content

    def error(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """The ``error`` object of a call that must fail as a tool error, checked against its text."""
        result = self.call(tool, **arguments)
        assert result.is_error, f"{tool} did not fail: {result.structured_content}"
        assert isinstance(result.structured_content, dict), result.content
        error: dict[str, Any] = result.structured_content["error"]
        assert set(error) == {"code", "message", "details"}, error
        assert result.content[0].text == f"{error['code']}: {error['message']}"  # type: ignore[union-attr]
        return error

    def tools(self) -> Any:
        return self.portal.call(self.client.list_tools).tools

    def resources(self) -> Any:
        return self.portal.call(self.client.list_resources).resources

    def resource_templates(self) -> Any:
        return self.portal.call(self.client.list_resource_templates).resource_templates

    def read(self, uri: str) -> str:
        contents = self.portal.call(self.client.read_resource, uri).contents
        assert len(contents) == 1
        text: str = contents[0].text  # type: ignore[union-attr]
        return text


def http_transport(served: Served, token: str | None) -> Any:
    """Streamable HTTP to the API's ``/mcp``, with the bearer token on every request."""

    @asynccontextmanager
    async def connected() -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{served.url}/mcp", http_client=http), read_timeout_seconds=30) as client,
        ):
            yield client

    return connected()


def stdio_parameters(served: Served, token: str) -> StdioServerParameters:
    """``workyard mcp`` as an agent's host launches it, from this worktree's code."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator.cli", "mcp", "--url", served.url, "--token", token],
        env={"PYTHONPATH": str(ROOT), "WORKYARD_DATA_DIR": str(served.tmp / "agent-host")},
        cwd=str(ROOT),
    )


def stdio_transport(parameters: StdioServerParameters, errlog: TextIO) -> Any:
    @asynccontextmanager
    async def connected() -> AsyncIterator[Client]:
        async with Client(stdio_client(parameters, errlog=errlog), read_timeout_seconds=30) as client:
            yield client

    return connected()


@contextmanager
def connect(
    transport: str, served: Served, token: str, tmp_path: Path, *, parameters: StdioServerParameters | None = None
) -> Iterator[Mcp]:
    """A connected MCP session over ``transport`` ("http" or "stdio") for ``token``; ``parameters``
    launch ``workyard mcp`` otherwise than with ``--url`` and ``--token``."""
    with open(tmp_path / "mcp-server.log", "w+", encoding="utf-8") as errlog, start_blocking_portal() as portal:
        if transport == "http":
            connection = http_transport(served, token)
        else:
            connection = stdio_transport(parameters or stdio_parameters(served, token), errlog)
        try:
            with portal.wrap_async_context_manager(connection) as client:
                yield Mcp(portal, client)
        except BaseException:
            errlog.seek(0)
            print(f"workyard mcp's stderr:\n{errlog.read()}", file=sys.stderr)
            raise


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
