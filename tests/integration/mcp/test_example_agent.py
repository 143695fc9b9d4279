"""examples/mcp_agent.py works a saga's items through MCP on a real stack (orchestrator, API and
Celery workers as subprocesses; SQLite and PostgreSQL): the items a saga opens for agents are
claimed, started and completed with the agent's summary, and each saga resumes with it and ends
completed. Once over streamable HTTP, once over stdio (the example launches ``workyard mcp``).
And on plain tasks, which wait in review once completed, it works each once and stops when idle."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from models.enums import SagaState
from models.principal import PrincipalType
from orchestrator.work.tokens import create_token
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.mcp.conftest import Served
from tests.integration.templates import AGENT_REVIEW
from tests.support import ROOT, RedisTarget
from workers.client import WorkyardClient

ITEMS = 2


@pytest.fixture(scope="module")
def stack(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp(f"mcp-agent-{backend}")
    for url in database_url(backend, tmp):
        harness = Harness(stack_settings(tmp, url, redis_target), redis_target, api=True)
        try:
            harness.start()
            harness.register(AGENT_REVIEW)
            yield harness
        finally:
            harness.stop()


def run_agent(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.mcp_agent", *args],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "WORKYARD_TOKEN": token},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def agent_token(stack: Harness) -> str:
    with stack.wiring.sessions.begin() as session:
        issued = create_token(
            session,
            principal_type=PrincipalType.agent,
            principal_id=f"summarizer-{uuid.uuid4().hex[:6]}",
            tenant="acme",
            scopes=["work:read", "work:claim"],
            capabilities=["review"],  # AGENT_REVIEW offers its item to agents with this capability
        )
    return issued.secret


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_the_example_agent_works_a_sagas_items_through_mcp(stack: Harness, transport: str) -> None:
    tags = [f"doc-{uuid.uuid4().hex[:6]}" for _ in range(ITEMS)]
    saga_ids = [stack.submit(str(AGENT_REVIEW["name"]), {"tag": tag}) for tag in tags]
    api = stack.settings.api_url
    how = ["--http", f"{api}/mcp"] if transport == "http" else ["--stdio", "--api-url", api]
    agent = run_agent(*how, "--max-items", str(ITEMS), "--poll-s", "0.2", token=agent_token(stack))
    assert agent.returncode == 0, agent.stdout + agent.stderr
    assert f"worked {ITEMS} item(s)" in agent.stdout
    for saga_id, tag in zip(saga_ids, tags, strict=True):
        saga = stack.wait_final(saga_id)
        assert saga.state is SagaState.completed, saga.error
        assert saga.results["review"] == {"summary": f"fields: tag ({len(tag)})"}
        (item,) = [i for i in saga.work_items if i.step == "review"]
        assert item.status == "done" and item.holder is None


def test_the_example_agent_does_not_stall_on_tasks_waiting_in_review(served: Served) -> None:
    # A completed task waits in review, still offered to agents and older than the rest: claim_next
    # must not hand it out again, or the agent would loop on it.
    capability = f"review-{uuid.uuid4().hex[:6]}"
    created = [served.create_item(capability) for _ in range(ITEMS)]
    token = served.token(f"agent:{capability}", capabilities=(capability,))
    agent = run_agent("--http", f"{served.url}/mcp", "--until-idle", token=token)
    assert agent.returncode == 0, agent.stdout + agent.stderr
    assert f"worked {ITEMS} item(s)" in agent.stdout
    with WorkyardClient(served.url, token) as http:
        items = [http.get_work_item(item.id) for item in created]
        claims = [[e.action for e in http.history(item)].count("claimed") for item in created]
    assert [(i.status, i.claim) for i in items] == [("review", None)] * ITEMS
    assert all(i.result == {"summary": "fields: doc (5), lines (2)"} for i in items)
    assert claims == [1] * ITEMS  # each claimed once: none handed out again from review
