"""The upstream systems' Python client (``workers.upstream.SagaClient``) against a real stack: the
API as its own process, the orchestrator and workers running the sagas to their end, on SQLite
and PostgreSQL. Failures come from a real HTTP proxy in between that loses answers or answers
503/429 itself: a submit with an idempotence key is sent again and answers the saga the lost one
started; one without is never sent twice."""

from __future__ import annotations

import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from typing import IO

import pytest
from sqlalchemy import select

from models.api import SagaCreate
from models.principal import PrincipalType
from models.tables import SagaRun
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS, database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget
from workers.client import ApiError
from workers.upstream import SagaClient, SubmitOutcomeUnknown

# A step no worker takes: its saga runs until someone looks.
NOBODY = {"name": "it.nobody", "version": "1.0.0", "steps": [{"name": "wait", "capability": "nobody", "handler": "x"}]}


class FlakyProxy:
    """An HTTP/1.1 proxy to the API that does, with each request in turn, what ``plan`` says
    next: ``pass`` it on (the default), ``drop`` its answer (the API does the work, the client
    sees the connection close), or answer ``503`` / ``429`` itself (the API never sees it)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.plan: deque[str] = deque()
        self.seen: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client = conn.makefile("rb")
            while (request := read_message(client)) is not None:
                action = self.plan.popleft() if self.plan else "pass"
                self.seen.append(f"{request.split(b' ', 2)[1].decode()} {action}")
                if action in ("503", "429"):
                    body = b'{"error": {"code": "unavailable", "message": "try again", "details": []}}'
                    head = f"HTTP/1.1 {action} No\r\nContent-Type: application/json\r\nRetry-After: 0\r\n"
                    conn.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                    continue
                if upstream is None:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                    answers = upstream.makefile("rb")
                upstream.sendall(request)
                response = read_message(answers)
                if action == "drop" or response is None:
                    return  # the API did the work; its answer never reaches the client
                conn.sendall(response)
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()


def read_message(stream: IO[bytes]) -> bytes | None:
    """One HTTP/1.1 request or response with a Content-Length body, as bytes; None at the end."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + stream.read(length)


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Harness, str]]:
    """A running stack with its API, and an acme token that may submit and read sagas."""
    tmp = tmp_path_factory.mktemp("upstream")
    for url in database_url(str(request.param), tmp):
        harness = Harness(stack_settings(tmp, url, redis_target), redis_target, api=True)
        try:
            harness.start()
            harness.register(THREE_STEPS)
            harness.register(NOBODY)
            with harness.wiring.sessions.begin() as session:
                issued = create_token(
                    session,
                    principal_type=PrincipalType.user,
                    principal_id="upstream",
                    tenant="acme",
                    scopes=["sagas:read", "sagas:write"],
                )
            yield harness, issued.secret
        finally:
            harness.stop()


@pytest.fixture
def proxy(stack: tuple[Harness, str]) -> Iterator[FlakyProxy]:
    made = FlakyProxy(stack[0].settings.api_port)
    yield made
    made.close()


@pytest.fixture
def sagas(stack: tuple[Harness, str], proxy: FlakyProxy) -> Iterator[SagaClient]:
    with SagaClient(proxy.url, stack[1], timeout=30) as client:
        yield client


def keyed(harness: Harness, key: str) -> list[str]:
    with harness.wiring.sessions() as session:
        return list(session.scalars(select(SagaRun.id).where(SagaRun.idempotence_key == key)))


def tagged(harness: Harness, tag: str) -> int:
    with harness.wiring.sessions() as session:
        return sum(run.input == {"tag": tag} for run in session.scalars(select(SagaRun)))


def test_a_saga_submitted_is_followed_to_its_end(stack: tuple[Harness, str], sagas: SagaClient) -> None:
    saga = sagas.submit("it.three", {"tag": "followed"}, idempotence_key=f"follow-{uuid.uuid4()}")
    assert saga.state == "running" and saga.tenant == "acme" and [s.name for s in saga.steps] == ["one", "two", "three"]
    done = sagas.wait(saga.id, timeout_s=60, poll_s=0.1)
    assert done.state == "completed" and done.id == saga.id
    assert [a.outcome for a in done.attempts] == ["succeeded"] * 3
    assert sagas.get(saga.id) == done
    with pytest.raises(ApiError) as missing:
        sagas.get("no-such-saga")
    assert missing.value.status == 404 and missing.value.code == "not_found"


def test_a_submit_whose_answer_was_lost_is_sent_again_and_answers_the_saga_it_started(
    stack: tuple[Harness, str], sagas: SagaClient, proxy: FlakyProxy
) -> None:
    harness, _ = stack
    key = f"order-{uuid.uuid4()}"
    proxy.plan.extend(["drop", "503", "429"])
    saga = sagas.submit("it.three", {"tag": "retried"}, idempotence_key=key)
    assert [s.split()[1] for s in proxy.seen] == ["drop", "503", "429", "pass"]
    # The lost answer's saga, answered to the last delivery: one saga for the key.
    assert keyed(harness, key) == [saga.id]
    assert sagas.wait(saga.id, timeout_s=60, poll_s=0.1).state == "completed"


def test_a_submit_without_a_key_is_never_sent_twice(
    stack: tuple[Harness, str], sagas: SagaClient, proxy: FlakyProxy
) -> None:
    harness, _ = stack
    tag = f"once-{uuid.uuid4()}"
    proxy.plan.append("drop")
    with pytest.raises(SubmitOutcomeUnknown) as unknown:
        sagas.submit("it.three", {"tag": tag})
    assert "it.three" in str(unknown.value) and "idempotence key" in str(unknown.value)
    assert len(proxy.seen) == 1 and tagged(harness, tag) == 1  # the API did start it, once
    proxy.plan.append("503")
    with pytest.raises(ApiError) as busy:
        sagas.submit("it.three", {"tag": tag + "-busy"})
    assert busy.value.status == 503 and busy.value.retryable
    assert len(proxy.seen) == 2 and tagged(harness, tag + "-busy") == 0


def test_many_sagas_are_submitted_in_batches_and_answered_in_order(
    stack: tuple[Harness, str], sagas: SagaClient, proxy: FlakyProxy
) -> None:
    harness, _ = stack
    run = uuid.uuid4().hex[:8]
    entries: list[SagaCreate | dict[str, object]] = [
        SagaCreate(template="it.three", input={"tag": f"{run}-{n}"}, idempotence_key=f"{run}-{n}") for n in range(2500)
    ]
    entries[10] = {"template": "it.three", "input": {"tag": 10}, "idempotence_key": f"{run}-bad"}
    entries[1500] = {"template": "it.unknown", "input": {}, "idempotence_key": f"{run}-unknown"}
    # The first batch's answer is lost after the API started its sagas: sent again, it answers them.
    proxy.plan.append("drop")
    results = sagas.submit_many(entries)
    assert [s.split()[0] for s in proxy.seen] == ["/api/v1/sagas/batch"] * 4
    assert [r.index for r in results] == list(range(2500))
    statuses = [r.status for r in results]
    assert statuses[10] == 422 and results[10].error is not None
    assert [d.path for d in results[10].error.details] == ["sagas.10.input.tag"]
    # Paths name the entry's place in its batch; index its place in the whole list.
    assert statuses[1500] == 404 and results[1500].error is not None and results[1500].error.code == "not_found"
    assert set(statuses[:1000]) - {422} == {200} and set(statuses[1000:]) - {404} == {202}
    assert len({r.saga.id for r in results if r.saga is not None}) == 2498
    again = sagas.submit_many(entries)
    assert [r.saga.id if r.saga else None for r in again] == [r.saga.id if r.saga else None for r in results]
    assert {r.status for r in again if r.saga is not None} == {200}
    assert keyed(harness, f"{run}-7") == [results[7].saga.id if results[7].saga else None]


def test_a_batch_over_the_request_size_is_sent_in_halves(stack: tuple[Harness, str], sagas: SagaClient) -> None:
    run = uuid.uuid4().hex[:8]
    wide = [
        SagaCreate(template="it.three", input={"tag": f"{n}-" + "x" * 1500}, idempotence_key=f"{run}-{n}")
        for n in range(1000)
    ]
    results = sagas.submit_many(wide)
    assert [r.status for r in results] == [202] * 1000 and [r.index for r in results] == list(range(1000))


def test_waiting_too_long_names_the_saga_and_where_it_stands(sagas: SagaClient) -> None:
    saga = sagas.submit("it.nobody", {})
    with pytest.raises(TimeoutError) as late:
        sagas.wait(saga.id, timeout_s=0.3, poll_s=0.05)
    assert saga.id in str(late.value) and "running" in str(late.value) and "wait running" in str(late.value)
