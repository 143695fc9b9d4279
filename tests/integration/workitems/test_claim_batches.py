"""claim-next calls served together (claim_batches): exactly once, each call its own claim."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.exc import DataError

from models.base import utcnow
from models.principal import Principal, PrincipalType
from models.trace_tables import AgentActionRow
from models.work_api import WorkItemCreate, WorkItemRead
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.errors import Forbidden
from orchestrator.traceability.ids import action_id
from orchestrator.work import claims
from orchestrator.work.claim_batches import ClaimBatcher
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import sessions, task
from tests.support import eventually

CLAIMERS = 50
ITEMS = 500


def agent(ident: str, *capabilities: str, tenant: str = "acme") -> Principal:
    return Principal(
        type=PrincipalType.agent,
        id=ident,
        tenant=tenant,
        scopes=frozenset({"work:read", "work:write", "work:claim"}),
        capabilities=frozenset(capabilities),
    )


def person(ident: str) -> Principal:
    return Principal(type=PrincipalType.user, id=ident, tenant="acme", scopes=frozenset({"work:read", "work:claim"}))


def create(client: TestClient, **fields: Any) -> str:
    body = WorkItemCreate.model_validate(task(**fields))
    return create_item(sessions(client), agent("seeder"), body, max_payload_bytes=1 << 20)[0].id


def claimed(client: TestClient) -> dict[str, tuple[str | None, Any]]:
    """Every item's holder and when it was claimed."""
    with sessions(client)() as session:
        rows = session.execute(select(WorkItem.id, WorkItem.claimed_by_id, WorkItem.claimed_at)).all()
    return {r.id: (r.claimed_by_id, r.claimed_at) for r in rows}


def audited(client: TestClient) -> Counter[str]:
    with sessions(client)() as session:
        return Counter(session.scalars(select(WorkItemEvent.item_id).where(WorkItemEvent.action == "claimed")).all())


@contextmanager
def writes_held(client: TestClient, backend: str) -> Iterator[None]:
    """Claims' writes wait while this is open: a claim transaction blocks in its first write (its
    audit row on PostgreSQL; SQLite's write lock), so the calls behind it queue."""
    engine = client.app.state.wiring.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        if backend == "sqlite":
            conn.exec_driver_sql("SELECT 1")  # workyard's engine begins it IMMEDIATE: the write lock
        else:
            conn.execute(text("LOCK TABLE work_item_events IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()


def call(batcher: ClaimBatcher, pool: ThreadPoolExecutor, who: Principal) -> Future[WorkItemRead | None]:
    return pool.submit(batcher.claim_next, who, ttl_s=None, default_ttl_s=300)


def queue_behind_a_held_claim(
    client: TestClient, backend: str, batcher: ClaimBatcher, first: Principal, *others: Principal
) -> tuple[Future[WorkItemRead | None], list[Future[WorkItemRead | None]]]:
    """``first``'s claim takes the batcher's one transaction and blocks; ``others`` queue behind
    it, and are claimed together once it is let go."""
    with ThreadPoolExecutor(len(others) + 1) as pool, writes_held(client, backend):
        head = call(batcher, pool, first)
        eventually(lambda: batcher.running == 1, what="the first claim's transaction")
        rest = [call(batcher, pool, who) for who in others]
        eventually(lambda: batcher.waiting == len(others), what="the other calls queued")
    return head, rest


def results(futures: list[Future[WorkItemRead | None]]) -> list[str | None]:
    return [None if (item := f.result(timeout=60)) is None else item.id for f in futures]


def test_50_claimers_through_the_batcher_claim_each_item_exactly_once(client: TestClient) -> None:
    body = WorkItemCreate.model_validate(task(offer={"type": "agent"}))
    factory = sessions(client)
    ids = {create_item(factory, agent("seeder"), body, max_payload_bytes=1 << 20)[0].id for _ in range(ITEMS)}
    batcher = client.app.state.wiring.claim_batcher  # type: ignore[attr-defined]
    start = threading.Barrier(CLAIMERS)

    def claimer(n: int) -> list[str]:
        me = agent(f"claimer-{n}")
        mine: list[str] = []
        start.wait()
        while (item := batcher.claim_next(me, ttl_s=None, default_ttl_s=300)) is not None:
            mine.append(item.id)
        return mine

    with ThreadPoolExecutor(CLAIMERS) as pool:
        got = list(pool.map(claimer, range(CLAIMERS)))
    tally = Counter(item_id for mine in got for item_id in mine)
    assert set(tally) == ids
    assert set(tally.values()) == {1}
    assert audited(client) == tally
    holders = claimed(client)
    assert all(holders[item_id][0] == f"claimer-{n}" for n, mine in enumerate(got) for item_id in mine)
    # The calls were served together: a transaction's claims share their time.
    assert max(Counter(at for _, at in holders.values()).values()) > 1
    assert batcher.running == 0 and batcher.waiting == 0


def test_calls_claimed_together_each_get_only_what_they_may_claim(client: TestClient, backend: str) -> None:
    first_open = create(client, offer={"type": "agent"}, priority=50)
    second_open = create(client, offer={"type": "agent"}, priority=50)
    translation = create(client, offer={"type": "agent", "capability": "translate"}, priority=90)
    bees = create(client, offer={"type": "agent"}, priority=10, assignee={"type": "agent", "id": "bee"})
    for_people = create(client, offer={"type": "human"}, priority=95)
    batcher = ClaimBatcher(sessions(client), transactions=1, batch_max=32)

    head, rest = queue_behind_a_held_claim(
        client,
        backend,
        batcher,
        agent("a"),
        agent("c"),  # neither the translation (no capability) nor bee's item
        agent("t", "translate"),
        agent("bee"),  # its own item: the open ones it may claim went to the calls ahead of it
        person("ann"),
        agent("c", tenant="globex"),  # another tenant's call: nothing of acme's
    )

    assert results([head]) == [first_open]
    assert results(rest) == [second_open, translation, bees, for_people, None]
    holders = claimed(client)
    assert [holders[i][0] for i in (first_open, second_open, translation, bees, for_people)] == [
        "a",
        "c",
        "t",
        "bee",
        "ann",
    ]
    # One transaction for the calls that queued (their claims share its time), another for the first.
    assert len({holders[i][1] for i in (second_open, translation, bees, for_people)}) == 1
    assert holders[first_open][1] != holders[second_open][1]
    assert audited(client) == Counter([first_open, second_open, translation, bees, for_people])


def test_a_call_that_fails_in_a_batch_fails_alone(client: TestClient, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite does not hold a string to its column's length: no claim to make fail")
    # One more than the good calls take, so the failing call always finds one to fail on.
    items = [create(client, offer={"type": "agent"}) for _ in range(4)]
    batcher = ClaimBatcher(sessions(client), transactions=1, batch_max=32)
    too_long = agent("x" * 300)  # longer than the holder's column: its claim's UPDATE fails

    head, (before, failing, after) = queue_behind_a_held_claim(
        client, backend, batcher, agent("a"), agent("b"), too_long, agent("c")
    )

    # The batch was rolled back and each of its calls claimed alone, at once: in any order.
    answers = results([head, before, after])
    got = [item_id for item_id in answers if item_id is not None]
    assert len(got) == 3 and got[0] == items[0] and len(set(got)) == 3 and set(got) <= set(items)
    with pytest.raises(DataError):
        failing.result(timeout=60)
    holders = claimed(client)
    assert [holders[i][0] for i in got] == ["a", "b", "c"]
    assert audited(client) == Counter(got)
    assert [i for i in items if holders[i][0] is None] == [i for i in items if i not in got]
    assert batcher.running == 0 and batcher.waiting == 0


def test_calls_of_a_batch_that_pick_the_same_lapsed_lease_take_it_over_once(client: TestClient, backend: str) -> None:
    """Both calls of a batch find the item whose holder's lease lapsed the best. On PostgreSQL
    their claim statements run before the first takes it over (they are sent together), so the
    second one's pick is that item too: it is claimed again once the takeover is written, and
    gets the next item instead of taking the same one over a second time."""
    lapsed = create(client, offer={"type": "agent"}, priority=90)
    following = create(client, offer={"type": "agent"}, priority=50)
    for_people = create(client, offer={"type": "human"}, priority=10)
    batcher = ClaimBatcher(sessions(client), transactions=1, batch_max=32)
    dead = batcher.claim_next(agent("dead"), ttl_s=60, default_ttl_s=300)
    assert dead is not None and dead.id == lapsed
    with sessions(client).begin() as session:
        past = utcnow() - timedelta(seconds=1)
        session.execute(update(WorkItem).where(WorkItem.id == lapsed).values(lease_expires_at=past))

    # The head's claim (a person's: not the agents' items) holds the transaction; a and b queue.
    head, rest = queue_behind_a_held_claim(client, backend, batcher, person("ann"), agent("a"), agent("b"))

    assert results([head, *rest]) == [for_people, lapsed, following]
    holders = claimed(client)
    assert holders[lapsed][0] == "a" and holders[following][0] == "b"
    assert audited(client) == Counter([lapsed, lapsed, following, for_people])  # dead's claim, then a's
    with sessions(client)() as session:
        expired = session.scalars(select(WorkItemEvent.item_id).where(WorkItemEvent.action == "lease_expired")).all()
        epoch = session.scalar(select(WorkItem.lease_epoch).where(WorkItem.id == lapsed))
    assert expired == [lapsed] and epoch == 2


def test_a_call_without_the_claim_scope_is_refused_before_it_queues(client: TestClient) -> None:
    create(client, offer={"type": "agent"})
    batcher: ClaimBatcher = client.app.state.wiring.claim_batcher  # type: ignore[attr-defined]
    reader = Principal(type=PrincipalType.agent, id="r", tenant="acme", scopes=frozenset({"work:read"}))
    with pytest.raises(Forbidden, match="work:claim"):
        batcher.claim_next(reader, ttl_s=None, default_ttl_s=300)
    assert batcher.running == 0 and batcher.waiting == 0
    assert not audited(client)


def test_batched_claims_record_each_agents_action_numbered_after_its_last(client: TestClient, backend: str) -> None:
    """The actions of a batch's claims are written together before its commit (PostgreSQL), each
    numbered after its agent's last action on its item: a re-claim after a release is the 2nd."""
    again = create(client, offer={"type": "agent"})
    batcher = ClaimBatcher(sessions(client), transactions=1, batch_max=32)
    first = batcher.claim_next(agent("a"), ttl_s=None, default_ttl_s=300)
    assert first is not None and first.id == again and first.lease_epoch is not None
    with sessions(client).begin() as session:
        claims.release(session, agent("a"), again, first.lease_epoch, None)
    top = create(client, offer={"type": "agent"}, priority=90)

    head, rest = queue_behind_a_held_claim(client, backend, batcher, agent("z"), agent("a"), agent("b"))

    assert results([head, *rest]) == [top, again, None]
    with sessions(client)() as session:
        rows = session.execute(
            select(AgentActionRow.id, AgentActionRow.item_id, AgentActionRow.agent_id, AgentActionRow.sequence).where(
                AgentActionRow.kind == "claimed"
            )
        ).all()
    assert sorted((r.item_id, r.agent_id, r.sequence) for r in rows) == sorted(
        [(again, "a", 1), (again, "a", 2), (top, "z", 1)]
    )
    assert {r.id for r in rows} == {action_id(r.item_id, r.agent_id, r.sequence) for r in rows}


def test_a_batch_whose_connection_the_server_closes_is_claimed_again_alone(
    client: TestClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the backend of a batch's transaction as its claims go out together: the
    connection is thrown away as SQLAlchemy would, the batch rolled back, and each call claims
    alone on a fresh connection (not every call answered "the connection is lost")."""
    if backend == "sqlite":
        pytest.skip("a batch's claims go out together on PostgreSQL only")
    from orchestrator.storage import driver_sql

    for _ in range(4):
        create(client, offer={"type": "agent"})
    factory = sessions(client)
    pipelined = driver_sql.pipelined
    ended: list[int] = []

    def ending_its_backend(session: Any, statements: Any, **options: Any) -> Any:
        if not ended:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with factory() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            ended.append(pid)
        return pipelined(session, statements, **options)

    monkeypatch.setattr(driver_sql, "pipelined", ending_its_backend)
    batcher = ClaimBatcher(factory, transactions=1, batch_max=32)
    head, rest = queue_behind_a_held_claim(client, backend, batcher, agent("h"), agent("a"), agent("b"), agent("c"))
    got = results([head, *rest])
    assert ended, "the batch's claims never went out together"
    ids = [item_id for item_id in got if item_id is not None]
    assert len(set(ids)) == len(got) == 4
    holders = claimed(client)
    assert sorted(holders[i][0] or "" for i in ids) == ["a", "b", "c", "h"]
