"""One trace per saga (OpenTelemetry), in one process: the API, the coordinator and the worker's
runtime as they run in their own processes, joined by the messages between them (dispatch bodies
and reports), into the SDK's in-memory exporter. tests/integration/test_tracing_processes.py
runs the same across real processes.

A saga that compensates: ``first`` succeeds, ``second`` fails for good, ``first`` is undone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from config import tracing
from models.enums import SagaState
from orchestrator.api.app import create_app
from orchestrator.sagas.queries import read_saga
from orchestrator.service.dispatcher import Publishable
from orchestrator.service.wiring import Wiring
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget, in_memory_tracing
from workers import StepContext, StepFailed, step
from workers.runtime import RuntimeConfig, StepRuntime
from workers.store import StepStore

TOKEN = "tracing-admin-token"
UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM = f"00-{UPSTREAM_TRACE}-00f067aa0ba902b7-01"


class Cmd(BaseModel):
    tag: str


@step("trace_first", capability="tracing")
def trace_first(ctx: StepContext, cmd: Cmd) -> dict[str, str]:
    return {"tag": cmd.tag}


@step("trace_undo_first", capability="tracing")
def trace_undo_first(ctx: StepContext, cmd: Cmd) -> dict[str, str]:
    return {"undone": cmd.tag}


@step("trace_second", capability="tracing")
def trace_second(ctx: StepContext, cmd: Cmd) -> dict[str, str]:
    raise StepFailed(f"second fails for {cmd.tag}", retryable=False)


def template(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0.0",
        "steps": [
            {"name": "first", "capability": "tracing", "handler": "trace_first", "compensate": "trace_undo_first"},
            {"name": "second", "capability": "tracing", "handler": "trace_second"},
        ],
    }


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with in_memory_tracing() as exporter:
        yield exporter


def hex_id(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_one_trace_from_the_submit_request_through_workers_reports_and_compensation(
    wiring: Wiring, spans: InMemorySpanExporter, clean_redis: RedisTarget
) -> None:
    # Every dispatch the coordinator publishes, as the worker would receive it.
    sent: list[dict[str, Any]] = []
    publish = wiring.dispatcher.publish

    def publish_and_keep(rows: Sequence[Publishable]) -> None:
        sent.extend(row.payload["body"] for row in rows)
        publish(rows)

    wiring.dispatcher.publish = publish_and_keep  # type: ignore[method-assign]
    app = create_app(wiring.settings.model_copy(update={"admin_token": TOKEN}))
    api_publish = app.state.wiring.dispatcher.publish

    def api_publish_and_keep(rows: Sequence[Publishable]) -> None:
        sent.extend(row.payload["body"] for row in rows)
        api_publish(rows)

    app.state.wiring.dispatcher.publish = api_publish_and_keep
    runtime = StepRuntime(
        StepStore(clean_redis.client(), claim_ttl_ms=5000, dedup_ttl_s=60),
        RuntimeConfig(lease_ttl_ms=5000, lease_wait_ms=1000, worker="tracing@test"),
    )
    name = f"traced.{uuid.uuid4().hex[:8]}"
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/api/v1/templates", json=template(name)).status_code == 201
        answer = client.post(
            "/api/v1/sagas",
            json={"template": name, "input": {"tag": "t1"}},
            headers={"traceparent": UPSTREAM, "X-Request-ID": "req-trace-1"},
        )
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Request-ID"] == "req-trace-1"
        saga_id = answer.json()["id"]
        # The upstream system's trace is the saga's: its request span is the parent.
        assert answer.json()["trace_id"] == UPSTREAM_TRACE

        # The API published the first dispatch; the worker runs it, the coordinator applies the
        # report, and so on until nothing more is sent.
        body = client.get(f"/api/v1/sagas/{saga_id}").json()
        assert body["trace_id"] == UPSTREAM_TRACE
    queue = [b for b in sent if b.get("saga_id") == saga_id]
    assert len(queue) == 1
    while queue:
        dispatch = queue.pop(0)
        assert dispatch["traceparent"] is not None
        delivery = runtime.deliver(dispatch)
        assert delivery.messages, delivery
        sent.clear()
        wiring.coordinator.handle([m.model_dump(mode="json") for m in delivery.messages])
        queue.extend(b for b in sent if b.get("saga_id") == saga_id)

    with wiring.sessions() as session:
        saga = read_saga(session, saga_id)
    assert saga.state == SagaState.compensated
    assert saga.trace_id == UPSTREAM_TRACE

    finished = spans.get_finished_spans()
    ours = [s for s in finished if s.context is not None and s.context.trace_id == int(UPSTREAM_TRACE, 16)]
    # Nothing of the saga's went to another trace.
    assert {attr(s, "workyard.saga_id") for s in finished if s not in ours} - {None} == set()
    by_id = {s.context.span_id: s for s in ours if s.context is not None}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    (request,) = named(ours, "POST /api/v1/sagas")
    assert request.parent is not None and hex_id(request.parent.span_id, 16) == "00f067aa0ba902b7"
    assert attr(request, "http.route") == "/api/v1/sagas"
    (submit,) = named(ours, "saga submit")
    assert parent(submit) is request and attr(submit, "workyard.saga_id") == saga_id

    runs = named(ours, "step run")
    assert [attr(r, "workyard.step") for r in runs] == ["first", "second"]
    assert [attr(r, "workyard.outcome") for r in runs] == ["succeeded", "failed"]
    # Each attempt: written by a dispatch span, run by the worker's span after it, applied by
    # the coordinator's span after that; the next dispatch is written inside the apply.
    dispatches = named(ours, "step dispatch")
    assert parent(dispatches[0]) is submit
    applies = named(ours, "report apply")
    assert len(applies) == 3
    assert [parent(r) for r in runs] == dispatches
    assert parent(applies[0]) is runs[0] and parent(applies[1]) is runs[1]
    assert parent(dispatches[1]) is applies[0]
    (published,) = [p for p in named(ours, "outbox publish") if parent(p) is dispatches[0]]

    # The compensation of `first` links to the span that ran `first` forward, the one it undoes.
    (undo_dispatch,) = named(ours, "compensation dispatch")
    (undo_run,) = named(ours, "compensation run")
    assert parent(undo_dispatch) is applies[1]
    assert parent(undo_run) is undo_dispatch
    assert parent(applies[2]) is undo_run
    forward = runs[0].context
    for undo in (undo_dispatch, undo_run):
        assert [(link.context.trace_id, link.context.span_id) for link in undo.links] == [
            (forward.trace_id, forward.span_id)
        ]
    assert published.kind.name == "PRODUCER"


def test_a_saga_submitted_untraced_has_no_trace_id_and_its_messages_no_traceparent(wiring: Wiring) -> None:
    """Not tracing: nothing recorded, nothing carried (the no-op default)."""
    from orchestrator.sagas.submit import submit_saga
    from orchestrator.sagas.templates import parse_template, register_template

    assert not tracing.enabled()
    name = f"untraced.{uuid.uuid4().hex[:8]}"
    register_template(wiring.sessions, parse_template(template(name)))
    submitted = submit_saga(wiring.sessions, wiring.settings, template=name, input={"tag": "u"})
    assert submitted.saga.trace_id is None
    assert [row.payload["body"]["traceparent"] for row in submitted.outbox] == [None]
    with wiring.sessions() as session:
        assert read_saga(session, submitted.saga.id).trace_id is None


# Run in a process of its own: OpenTelemetry's global tracer provider can be set once per process.
_GLOBAL_PROVIDER_SCRIPT = """
import json, sys, tempfile
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from config import tracing
from config.settings import Settings
from orchestrator.api.app import create_app

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
# As setup_tracing installs it: the global provider, and workyard's.
trace.set_tracer_provider(provider)
tracing.use_provider(provider)
with tempfile.TemporaryDirectory() as data:
    app = create_app(Settings(data_dir=data, database_url=f"sqlite:///{data}/workyard.db"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
print(json.dumps(sorted(span.name for span in exporter.get_finished_spans())))
"""


def test_a_traced_api_makes_one_span_per_request(tmp_path: Path) -> None:
    # With the SDK installed as the global provider (as OTEL_* configuration does), FastAPI's own
    # telemetry made a second server span per request, and spans for its dependencies and
    # serialisation: workyard's request span is the one.
    done = subprocess.run(
        [sys.executable, "-c", _GLOBAL_PROVIDER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["GET /healthz"]
