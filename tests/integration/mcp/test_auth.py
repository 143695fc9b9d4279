"""Who may reach the MCP server: ``/mcp`` takes the API's bearer tokens (a 401 in the API's error
shape without one), and ``workyard mcp`` finds its URL and token in flags, the environment or the
data dir, and refuses to start, saying why, on a token the API refuses or an API it cannot reach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from config.settings import Settings
from models.principal import PrincipalType
from orchestrator.api.app import create_app
from orchestrator.storage.migrate import upgrade
from orchestrator.work.tokens import create_token
from tests.integration.harness import free_port
from tests.integration.mcp.conftest import Served, connect, stdio_parameters
from tests.support import ROOT

# A JSON-RPC initialize, as an MCP client opens with it.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def flatten(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups: the SDK raises from its task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]


def test_mcp_over_http_needs_a_valid_token(served: Served) -> None:
    valid = served.token("agent:http-door")
    answers = {
        name: httpx.post(f"{served.url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **extra}, timeout=30)
        for name, extra in (
            ("none", {}),
            ("unknown", {"authorization": "Bearer wy_not-a-token"}),
            ("valid", {"authorization": f"Bearer {valid}"}),
        )
    }
    for name, message in (("none", "send a bearer token"), ("unknown", "the bearer token is unknown or revoked")):
        answer = answers[name]
        assert answer.status_code == 401, (name, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"]["code"] == "unauthorized" and message in answer.json()["error"]["message"]
    assert answers["valid"].status_code == 200, answers["valid"].text
    assert answers["valid"].json()["result"]["serverInfo"]["name"] == "workyard"


def test_the_sdk_client_cannot_connect_with_a_bad_token(served: Served, tmp_path: Path) -> None:
    with pytest.raises(BaseException) as refused, connect("http", served, "wy_not-a-token", tmp_path):
        pass
    # The SDK's client does not pass the 401's body on; that it refuses to connect is what holds.
    assert any(isinstance(e, MCPError) for e in flatten(refused.value)), refused.value


def workyard_mcp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "mcp", *args],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workyard_mcp_will_not_start_on_a_refused_token(served: Served, tmp_path: Path) -> None:
    refused = workyard_mcp("--url", served.url, "--token", "wy_not-a-token", env={"WORKYARD_DATA_DIR": str(tmp_path)})
    assert refused.returncode == 1
    assert refused.stdout == ""  # stdout is the protocol's: nothing but MCP ever goes there
    assert (
        f"the workyard API at {served.url} refused the token: the bearer token is unknown or revoked" in refused.stderr
    )
    # An MCP host that launches it sees the connection close, not a hang.
    with open(tmp_path / "stderr.log", "w+", encoding="utf-8") as errlog:

        async def launch() -> None:
            async with Client(stdio_client(stdio_parameters(served, "wy_not-a-token"), errlog=errlog)):
                pass

        with pytest.raises(BaseException) as closed:
            anyio.run(launch)
        errlog.seek(0)
        assert "refused the token" in errlog.read()
    assert any(isinstance(e, MCPError) for e in flatten(closed.value)), closed.value


def test_workyard_mcp_says_so_when_the_api_is_unreachable_or_no_token_is_found(tmp_path: Path) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    unreachable = workyard_mcp("--url", away, "--token", "wy_x", env={"WORKYARD_DATA_DIR": str(tmp_path)})
    assert unreachable.returncode == 1
    assert f"cannot reach the workyard API at {away}" in unreachable.stderr
    tokenless = workyard_mcp("--url", away, env={"WORKYARD_DATA_DIR": str(tmp_path / "empty")})
    assert tokenless.returncode == 1
    assert "no token: pass --token or set WORKYARD_TOKEN" in tokenless.stderr
    assert str(tmp_path / "empty" / "admin-token") in tokenless.stderr


@pytest.mark.parametrize("source", ["environment", "data dir"])
def test_workyard_mcp_takes_url_and_token_from_the_environment_or_the_data_dir(
    served: Served, source: str, tmp_path: Path
) -> None:
    capability = f"env-{source.replace(' ', '-')}"
    created = served.create_item(capability)
    token = served.token(f"agent:from-{capability}", capabilities=(capability,))
    env: dict[str, Any] = {"PYTHONPATH": str(ROOT), "WORKYARD_URL": served.url}
    if source == "environment":
        env |= {"WORKYARD_TOKEN": token, "WORKYARD_DATA_DIR": str(tmp_path / "nothing-here")}
    else:
        (tmp_path / "admin-token").write_text(token + "\n", encoding="utf-8")
        env |= {"WORKYARD_DATA_DIR": str(tmp_path)}
    parameters = stdio_parameters(served, token).model_copy(
        update={"args": ["-m", "orchestrator.cli", "mcp"], "env": env}
    )
    with connect("stdio", served, token, tmp_path, parameters=parameters) as mcp:
        claimed = mcp.ok("claim_next")["result"]
    assert claimed["id"] == created.id


def test_the_endpoint_answers_only_while_the_app_runs_and_after_a_restart(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'workyard.db'}", data_dir=tmp_path))
    upgrade(app.state.wiring.engine)
    headers = {**MCP_HEADERS, "authorization": f"Bearer {admin_token(app)}"}
    before = TestClient(app).post("/mcp", json=INITIALIZE, headers=headers)  # no lifespan: not running
    for _ in range(2):  # the SDK's session manager runs once: each start of the app makes its own
        with TestClient(app) as client:
            running = client.post("/mcp", json=INITIALIZE, headers=headers)
            assert running.status_code == 200, running.text
            assert running.json()["result"]["serverInfo"]["name"] == "workyard"
    assert before.status_code == 503 and before.json()["error"]["code"] == "unavailable"


def admin_token(app: Any) -> str:
    with app.state.wiring.sessions.begin() as session:
        return create_token(
            session, principal_type=PrincipalType.user, principal_id="ops", tenant="*", scopes=["admin"]
        ).secret
