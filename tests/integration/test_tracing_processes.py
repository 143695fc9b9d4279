"""One trace per saga across real processes: the submit in this process (the SDK's in-memory
exporter), the orchestrator and the Celery workers as subprocesses configured by the standard
variables alone (``OTEL_TRACES_EXPORTER=console``: one JSON span per line in each process's log),
and their logs as JSON lines naming the saga (``WORKYARD_LOG_FORMAT=json``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.enums import SagaState
from orchestrator.local.stack import WorkerSpec
from tests.conftest import database_url
from tests.integration.harness import HANDLERS, TENANT, Harness, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually, in_memory_tracing


@pytest.fixture
def harness(backend: str, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Harness]:
    for url in database_url(backend, tmp_path):
        built = Harness(
            stack_settings(tmp_path, url, clean_redis),
            clean_redis,
            workers=[WorkerSpec(["alpha"], HANDLERS, concurrency=2), WorkerSpec(["beta"], HANDLERS, concurrency=1)],
            extra_env={"OTEL_TRACES_EXPORTER": "console", "WORKYARD_LOG_FORMAT": "json"},
        )
        try:
            built.start()
            built.register(THREE_STEPS)
            yield built
        finally:
            built.stop()


def log_lines(harness: Harness) -> dict[str, list[dict[str, Any]]]:
    """Each process's log: the JSON lines in it (spans and log records), by process name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((harness.settings.data_path / "logs").glob("*.log")):
        lines = []
        for raw in path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    lines.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue
        found[path.stem] = lines
    return found


def spans_of(lines: dict[str, list[dict[str, Any]]], saga_id: str) -> list[dict[str, Any]]:
    """The saga's spans (the console exporter's JSON), each with the process that made it."""
    return [
        {**line, "process": process}
        for process, entries in lines.items()
        for line in entries
        if "context" in line and (line.get("attributes") or {}).get("workyard.saga_id") == saga_id
    ]


def test_one_trace_across_api_orchestrator_and_workers_and_the_compensation_links_its_forward_span(
    harness: Harness,
) -> None:
    tag = uuid.uuid4().hex[:12]
    with in_memory_tracing() as exporter:
        saga_id = harness.submit(
            "it.three", {"tag": tag, "behaviour": {"three": {"fail_always": True, "retryable": False}}}
        )
        (submit,) = [s for s in exporter.get_finished_spans() if s.name == "saga submit"]
    assert submit.context is not None
    trace_id = f"0x{submit.context.trace_id:032x}"
    final = harness.wait_final(saga_id, timeout=90)
    assert final.state == SagaState.compensated
    assert final.trace_id == trace_id[2:]

    def all_spans() -> list[dict[str, Any]]:
        found = spans_of(log_lines(harness), saga_id)
        # Until the last report's span (the coordinator's, as the saga ended) is written.
        return found if sum(s["name"] == "report apply" for s in found) >= 5 else []

    spans = eventually(all_spans, timeout=30, what="the saga's spans in the processes' logs")
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    by_id = {s["context"]["span_id"]: s for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_id"]]

    runs = [s for s in spans if s["name"] == "step run"]
    assert sorted(s["attributes"]["workyard.step"] for s in runs) == ["one", "three", "two"]
    assert {s["process"].split("-")[0] for s in runs} == {"worker"}
    assert {s["resource"]["attributes"]["service.name"] for s in runs} == {"workyard-worker"}
    applies = [s for s in spans if s["name"] == "report apply"]
    assert {s["process"] for s in applies} == {"orchestrator-0"}
    for apply in applies:
        assert parent(apply)["name"] in ("step run", "compensation run")
    for run in runs[1:]:
        # Dispatched by the orchestrator as it applied the report before.
        assert parent(run)["name"] == "step dispatch" and parent(parent(run))["name"] == "report apply"
    # The first dispatch was written by the submit in this process: its span is not in a log.
    first = min(runs, key=lambda s: s["start_time"])
    assert first["parent_id"] not in by_id

    forward = {s["attributes"]["workyard.step"]: s["context"]["span_id"] for s in runs}
    undo_runs = [s for s in spans if s["name"] == "compensation run"]
    undo_dispatches = [s for s in spans if s["name"] == "compensation dispatch"]
    assert sorted(s["attributes"]["workyard.step"] for s in undo_runs) == ["one", "two"]
    for undo in undo_runs + undo_dispatches:
        step = undo["attributes"].get("workyard.step") or ("one", "two")[undo["attributes"]["workyard.step_index"]]
        assert [link["context"]["span_id"] for link in undo["links"]] == [forward[step]]

    # The processes' own log lines are JSON and name the saga and its tenant.
    lines = [line for entries in log_lines(harness).values() for line in entries if "level" in line]
    about = [line for line in lines if line.get("saga_id") == saga_id]
    assert any(line["logger"] == "orchestrator.sagas.engine" and line.get("tenant") == TENANT for line in about), about
    assert any(line["logger"].startswith("celery") and line.get("step") == "three" for line in about), about
