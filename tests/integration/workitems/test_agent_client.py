"""The Python client's agent loop, as the README writes it, pass after pass against one API: a
lost lease reaches the agent's code, a vanished holder's work is resumed, progress is kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.integration.harness import free_port
from tests.integration.workitems.conftest import TokenFactory, task
from tests.integration.workitems.test_claims import lapse
from tests.support import eventually
from workers.client import LeaseLost, WorkyardClient

SUMMARIZE = {"type": "agent", "capability": "summarize"}


@pytest.fixture
def api(client: TestClient) -> Iterator[str]:
    """The test's app served over real HTTP by uvicorn, as agents reach it."""
    port = free_port()
    config = uvicorn.Config(client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, timeout=10, what="uvicorn to serve the API")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def clients(api: str, token: TokenFactory) -> Iterator[tuple[WorkyardClient, WorkyardClient, WorkyardClient]]:
    """The reporter, an agent, and a second agent."""
    made = [
        WorkyardClient(api, bearer(token("user:pm", scopes=["work:read", "work:write", "work:claim"]))),
        WorkyardClient(api, bearer(token("agent:a1", capabilities=["summarize"]))),
        WorkyardClient(api, bearer(token("agent:a2", capabilities=["summarize"]))),
    ]
    yield made[0], made[1], made[2]
    for each in made:
        each.close()


def test_a_lost_lease_reaches_the_agents_code(
    client: TestClient, clients: tuple[WorkyardClient, WorkyardClient, WorkyardClient]
) -> None:
    pm, agent, rival = clients
    pm.create_work_item(task(offer=SUMMARIZE))
    item = agent.claim_next(ttl_s=60)
    assert item is not None
    item = agent.start(item)
    with pytest.raises(LeaseLost) as lost, agent.keep_alive(item, every_s=0.1) as lease:
        lapse(client, item.id)
        taken = rival.claim_next(ttl_s=60)
        assert taken is not None and taken.id == item.id
        # The agent learns it while it works: the next beat is refused.
        assert lease.lost.wait(10), "the lost lease never reached the agent"
        with pytest.raises(LeaseLost):
            lease.check()
    assert lost.value.status == 409 and lost.value.code == "lease_lost" and item.id in str(lost.value)
    assert lost.value.cause is not None and "does not hold" in lost.value.cause.message


def test_an_error_in_the_block_is_not_masked_by_the_lost_lease(
    client: TestClient, clients: tuple[WorkyardClient, WorkyardClient, WorkyardClient]
) -> None:
    pm, agent, rival = clients
    pm.create_work_item(task(offer=SUMMARIZE))
    item = agent.start(agent.claim_next(ttl_s=60) or pytest.fail("nothing to claim"))
    with pytest.raises(ZeroDivisionError), agent.keep_alive(item, every_s=0.1) as lease:
        lapse(client, item.id)
        rival.claim_next(ttl_s=60)
        assert lease.lost.wait(10)
        _ = 1 / 0


def test_the_readme_loop_ten_times_with_leases_lapsing_between_runs(
    client: TestClient, clients: tuple[WorkyardClient, WorkyardClient, WorkyardClient]
) -> None:
    pm, agent, vanishing = clients
    done: list[str] = []
    for run in range(10):
        created = pm.create_work_item(task(f"summarize {run}", offer=SUMMARIZE, payload={"doc": f"INC-{run}"}))
        if run % 2:
            # Another agent takes the item, starts it and dies: its lease lapses before the loop runs.
            held = vanishing.start(vanishing.claim_next(ttl_s=60) or pytest.fail("nothing to claim"))
            assert held.id == created.id and held.status == "in_progress"
            lapse(client, held.id)
        # The README's loop, one pass.
        passes = 0
        while (item := agent.claim_next(ttl_s=120)) is not None:
            item = agent.start(item)
            with agent.keep_alive(item) as lease:
                lease.report({"done": 1, "of": 1})
                summary = summarize(item.payload)
            agent.complete(item, {"summary": summary})
            done.append(item.id)
            passes += 1
        assert passes == 1, f"run {run} worked {passes} items"
        finished = pm.get_work_item(created)
        assert finished.status == "review" and finished.result == {"summary": f"about INC-{run}"}
        actions = [e.action for e in pm.history(created)]
        if run % 2:
            assert actions == ["created", "claimed", "started", "lease_expired", "claimed", "resumed", "completed"]
        else:
            assert actions == ["created", "claimed", "started", "completed"]
    assert len(set(done)) == 10


def test_progress_a_heartbeat_reports_is_kept_and_only_a_change_moves_its_time(
    clients: tuple[WorkyardClient, WorkyardClient, WorkyardClient],
) -> None:
    pm, agent, _ = clients
    pm.create_work_item(task(offer=SUMMARIZE))
    item = agent.start(agent.claim_next(ttl_s=60) or pytest.fail("nothing to claim"))
    assert item.progress is None and item.progress_at is not None
    beat = agent.heartbeat(item, progress={"done": 2, "of": 5})
    assert beat.progress == {"done": 2, "of": 5} and beat.progress_at is not None
    assert item.progress_at is not None and beat.progress_at > item.progress_at
    # The same progress again is no news: its time stays.
    again = agent.heartbeat(item, progress={"done": 2, "of": 5})
    assert again.progress_at == beat.progress_at


def test_progress_reported_to_the_lease_reaches_the_item_with_the_beats(
    clients: tuple[WorkyardClient, WorkyardClient, WorkyardClient],
) -> None:
    pm, agent, _ = clients
    pm.create_work_item(task(offer=SUMMARIZE))
    item = agent.start(agent.claim_next(ttl_s=60) or pytest.fail("nothing to claim"))
    with agent.keep_alive(item, every_s=0.1) as lease:
        lease.report({"done": 1, "of": 3})
        eventually(lambda: pm.get_work_item(item).progress == {"done": 1, "of": 3}, timeout=10, what="progress")
        lease.report({"done": 2, "of": 3})
        eventually(lambda: pm.get_work_item(item).progress == {"done": 2, "of": 3}, timeout=10, what="more")


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def summarize(payload: dict[str, Any]) -> str:
    return f"about {payload['doc']}"
