"""A real stack for integration tests: orchestrator and Celery workers as subprocesses."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from config.settings import Settings
from models.api import SagaRead
from models.base import Base
from models.enums import SagaState
from models.tables import DeadLetter, SagaRun
from orchestrator.api.app import create_app
from orchestrator.local.stack import Stack, StackOptions, WorkerSpec
from orchestrator.sagas.queries import read_saga
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.wiring import Wiring
from tests.conftest import database_url, migrated_database_url
from tests.support import RedisTarget, as_text, eventually

HANDLERS = ["tests.integration.handlers"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_settings(data_dir: Path, database_url: str, target: RedisTarget, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "broker_url": target.broker_url,
        "redis_url": target.redis_url,
        "run_claim_ttl_ms": 1500,
        "lease_ttl_ms": 3000,
        "outbox_sweep_after_s": 1.0,
        "timer_poll_s": 0.05,
        "api_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def database_wiring(backend: str, tmp_path: Path, target: RedisTarget, **overrides: Any) -> Iterator[Wiring]:
    """A migrated database on ``backend`` and the orchestrator's wiring to it; no process runs,
    so the test applies reports and fires timers itself."""
    for url in migrated_database_url(backend, tmp_path):
        built = Wiring(stack_settings(tmp_path, url, target, **overrides))
        try:
            yield built
        finally:
            built.close()


def deadlined_saga(wiring: Wiring, *, timeout_ms: int, retry_ms: int) -> str:
    """A saga of a template of its own, submitted with its dispatch published: one step with
    ``timeout_ms`` (its attempt's deadline is that plus the watchdog grace) and three attempts
    ``retry_ms`` apart. No worker needs to run: nothing reports unless the test does."""
    name = f"deadlined.{uuid.uuid4().hex[:8]}"
    step = {
        "name": "one",
        "capability": "alpha",
        "handler": "one",
        "timeout_ms": timeout_ms,
        "retry": {"max_attempts": 3, "initial_ms": retry_ms, "max_ms": retry_ms, "jitter": 0.0},
    }
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": [step]}))
    submitted = submit_saga(wiring.sessions, wiring.settings, template=name, input={"tag": "t"})
    wiring.dispatcher.publish(submitted.outbox)
    return submitted.saga.id


@contextmanager
def admin_client(
    backend: str, tmp_path: Path, target: RedisTarget, admin_token: str, templates: Iterable[dict[str, Any]]
) -> Iterator[TestClient]:
    """The API in process on a fresh migrated database on ``backend``, called with the admin
    token ``admin_token``, with ``templates`` registered."""
    for url in migrated_database_url(backend, tmp_path):
        settings = stack_settings(tmp_path, url, target).model_copy(update={"admin_token": admin_token})
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {admin_token}"}) as client:
            for template in templates:
                assert client.post("/api/v1/templates", json=template).status_code == 201
            yield client


@contextmanager
def running_harness(
    backend: str, tmp: Path, target: RedisTarget, templates: Iterable[dict[str, Any]], **overrides: Any
) -> Iterator[Harness]:
    """A started stack on ``backend`` (its own PostgreSQL schema, or SQLite in ``tmp``), with
    ``templates`` registered; stopped, and its schema dropped, on the way out."""
    for url in database_url(backend, tmp):
        harness = Harness(stack_settings(tmp, url, target, **overrides), target)
        try:
            harness.start()  # inside: a stack that fails to come up still stops what it started
            for template in templates:
                harness.register(template)
            yield harness
        finally:
            harness.stop()


# The tenant the stacks' templates and sagas belong to (their work items open there).
TENANT = "acme"


class Harness:
    def __init__(
        self,
        settings: Settings,
        target: RedisTarget,
        *,
        workers: list[WorkerSpec] | None = None,
        api: bool = False,
        orchestrators: int = 1,
        extra_env: dict[str, str] | None = None,
    ):
        self.settings = settings
        self.target = target
        self.books: redis.Redis = target.client()
        self.stack = Stack(
            settings,
            StackOptions(
                workers=workers
                if workers is not None
                else [WorkerSpec(["alpha"], HANDLERS, concurrency=2), WorkerSpec(["beta"], HANDLERS, concurrency=2)],
                api=api,
                flower=False,
                orchestrators=orchestrators,
                extra_env=extra_env or {},
            ),
        )

    def start(self) -> Harness:
        self.books.flushdb()
        self.stack.start()
        return self

    def stop(self) -> None:
        self.stack.stop()

    @property
    def wiring(self) -> Any:
        return self.stack.wiring

    def register(self, doc: dict[str, Any], tenant: str = TENANT) -> None:
        register_template(self.wiring.sessions, parse_template(doc), tenant=tenant)

    def submit(self, template: str, data: dict[str, Any], key: str | None = None, tenant: str = TENANT) -> str:
        submitted = submit_saga(
            self.wiring.sessions, self.settings, template=template, input=data, idempotence_key=key, tenant=tenant
        )
        self.wiring.dispatcher.publish(submitted.outbox)
        return submitted.saga.id

    def saga(self, saga_id: str) -> SagaRead:
        with self.wiring.sessions() as session:
            return read_saga(session, saga_id)

    def wait_final(self, saga_id: str, timeout: float = 60.0) -> SagaRead:
        return eventually(
            lambda: (s := self.saga(saga_id)).state.terminal and s, timeout=timeout, what=f"saga {saga_id} to finish"
        )

    def finished(self, saga_ids: Sequence[str]) -> int:
        """How many of these sagas have ended, in one query: a fault test polls it while the
        stream runs, and reading every saga in full each poll is slow on a loaded machine."""
        with self.wiring.sessions() as session:
            states = session.scalars(select(SagaRun.state).where(SagaRun.id.in_(saga_ids)))
            return sum(SagaState(s).terminal for s in states)

    def wait_all_final(self, saga_ids: Sequence[str], *, timeout: float, what: str) -> None:
        """Wait until every one of these sagas has ended; a timeout names those still running,
        with their attempts."""

        def unfinished() -> list[str]:
            waiting = [s for s in map(self.saga, saga_ids) if not s.state.terminal]
            return [
                f"{s.id} {s.state}: " + ", ".join(f"{a.step_name}#{a.attempt} {a.outcome}" for a in s.attempts)
                for s in waiting
            ]

        try:
            eventually(lambda: not unfinished(), timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still running: {unfinished()}") from None

    def row_counts(self) -> dict[str, int]:
        with self.wiring.sessions() as session:
            return {
                t.name: session.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables
            }

    # -- the handlers' own books ---------------------------------------------------------------

    def calls(self, tag: str) -> dict[str, int]:
        return {as_text(k): int(v) for k, v in self.books.hgetall(f"test:calls:{tag}").items()}

    def effects(self, tag: str) -> list[str]:
        return [as_text(e) for e in self.books.lrange(f"test:effects:{tag}", 0, -1)]


# -- dead letters ----------------------------------------------------------------------------------


def letters(harness: Harness, marker: str) -> list[tuple[str, str]]:
    """(source, reason) of each dead letter whose body holds ``marker``."""
    with harness.wiring.sessions() as session:
        rows = session.scalars(select(DeadLetter).where(DeadLetter.body.contains(marker)).order_by(DeadLetter.id))
        return [(row.source, row.reason) for row in rows]


def dead_lettered(harness: Harness, marker: str) -> tuple[str, str]:
    found = eventually(lambda: letters(harness, marker), what=f"a dead letter holding {marker}")
    assert len(found) == 1, found
    return found[0]


def still_working(harness: Harness, marker: str) -> None:
    """No process exited, an ``it.three`` saga submitted now completes, and the garbage holding
    ``marker`` was dead-lettered once (not delivered again meanwhile)."""
    exited = [c.name for c in harness.stack.supervisor.children if c.process.poll() is not None]
    assert exited == [], f"{exited} exited"
    saga_id = harness.submit("it.three", {"tag": uuid.uuid4().hex[:12]})
    assert harness.wait_final(saga_id, timeout=60).state == "completed"
    assert len(letters(harness, marker)) == 1


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free port, in a thread, until the block ends; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-api", daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), timeout=30, what="uvicorn to serve the API")
        assert server.started, "uvicorn stopped before it served"
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def user_token(client: TestClient, tenant: str, scopes: list[str]) -> dict[str, str]:
    """Headers with a new token of ``user:ann`` in ``tenant`` with ``scopes``, issued through the
    client's own wiring."""
    from models.principal import PrincipalType
    from orchestrator.work.tokens import create_token

    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        token = create_token(
            session, principal_type=PrincipalType.user, principal_id="ann", tenant=tenant, scopes=scopes
        )
    return {"Authorization": f"Bearer {token.secret}"}
