"""Submitting sagas: concurrent requests with one idempotence key start one saga, a key in use
answers its saga whatever came after, and the pipelined writes of a submit fail as SQLAlchemy
errors (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from models.tables import OUTBOX, SAGAS, SagaRun
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.sagas.submit import Submitted, submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.wiring import Wiring
from orchestrator.storage.pipeline import pipelined
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget

REQUESTS = 8


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


def template(wiring: Wiring) -> str:
    name = f"submits.{uuid.uuid4().hex[:8]}"
    steps = [{"name": n, "capability": "alpha", "handler": n} for n in ("one", "two")]
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    return name


def test_concurrent_submits_with_one_key_start_one_saga(wiring: Wiring) -> None:
    name = template(wiring)
    start = threading.Barrier(REQUESTS)
    answers: list[Submitted] = []
    errors: list[BaseException] = []

    def submit() -> None:
        start.wait()
        try:
            answers.append(
                submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1}, idempotence_key="once")
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({a.saga.id for a in answers}) == 1
    assert [a.created for a in answers].count(True) == 1
    with wiring.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SagaRun).where(SagaRun.template_name == name)) == 1
        # One first dispatch, from the one submit that started the saga.
        assert session.scalar(select(func.count()).select_from(OUTBOX)) == 1


def test_a_failed_write_in_a_pipeline_is_a_sqlalchemy_error_and_writes_nothing(wiring: Wiring) -> None:
    name = template(wiring)
    first = submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1})
    row = {c.key: getattr(first.saga, c.key) for c in SagaRun.__table__.columns}
    with pytest.raises(IntegrityError):
        with wiring.sessions.begin() as session, pipelined(session):
            session.execute(
                insert(OUTBOX).inline(), [{"queue": "cap.alpha", "payload": {}, "created_at": first.saga.created_at}]
            )
            session.execute(insert(SAGAS), [row])  # the same primary key again
    with wiring.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SagaRun)) == 1
        assert session.scalar(select(func.count()).select_from(OUTBOX)) == 1  # the first saga's only


def test_a_key_in_use_answers_its_saga_even_where_its_input_would_now_be_refused(wiring: Wiring) -> None:
    name = template(wiring)
    first = submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1}, idempotence_key="job-7")
    # The template's next version asks for more than the job sent: a new job would be a 422.
    steps = [{"name": "one", "capability": "alpha", "handler": "one"}]
    stricter = {"type": "object", "required": ["m"], "properties": {"m": {"type": "integer"}}}
    register_template(
        wiring.sessions,
        parse_template({"name": name, "version": "2.0.0", "input_schema": stricter, "steps": steps}),
    )
    with pytest.raises(InvalidInput):
        submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1}, idempotence_key="job-8")
    again = submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1}, idempotence_key="job-7")
    assert (again.saga.id, again.created, again.outbox) == (first.saga.id, False, [])
    # The key with another template (one that does not even exist) is still the key's conflict.
    with pytest.raises(Conflict):
        submit_saga(wiring.sessions, wiring.settings, template="no.such", input={"n": 1}, idempotence_key="job-7")
    with wiring.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SagaRun).where(SagaRun.template_name == name)) == 1
