"""JSON log lines and their context; the OTEL_* configuration and the traceparent rules."""

from __future__ import annotations

import io
import json
import logging

from config import tracing
from config.logging import JsonFormatter, TextFormatter, log_context, log_format, set_log_context
from tests.support import in_memory_tracing


def emit(formatter: logging.Formatter, message: str, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logging.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info(message, extra=extra)
    return stream.getvalue().strip()


def test_a_json_line_carries_the_context_in_force_and_the_extra_fields() -> None:
    with log_context(request_id="r-1", tenant="acme"):
        set_log_context(saga_id="s-1")
        line = json.loads(emit(JsonFormatter(), "hello", status=202))
    assert line["message"] == "hello"
    assert {k: line[k] for k in ("level", "request_id", "tenant", "saga_id", "status")} == {
        "level": "INFO",
        "request_id": "r-1",
        "tenant": "acme",
        "saga_id": "s-1",
        "status": 202,
    }
    # Outside the block: no context.
    assert "request_id" not in json.loads(emit(JsonFormatter(), "later"))


def test_a_json_line_names_the_current_span_when_tracing() -> None:
    with in_memory_tracing(), tracing.span("work") as span:
        assert span is not None
        line = json.loads(emit(JsonFormatter(), "inside"))
        assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_text_lines_append_the_context_and_the_format_is_chosen_by_setting() -> None:
    with log_context(saga_id="s-2"):
        assert emit(TextFormatter(), "x").endswith("x [saga_id=s-2]")
    assert log_format("JSON") == "json" and log_format(None) in ("text", "json")


def test_tracing_is_on_only_when_the_otel_variables_ask_for_it() -> None:
    assert tracing.wanted_exporters({}) == []
    assert tracing.wanted_exporters({"OTEL_SERVICE_NAME": "x"}) == []
    assert tracing.wanted_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.wanted_exporters({"OTEL_TRACES_EXPORTER": "console, otlp"}) == ["console", "otlp"]
    assert tracing.wanted_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert tracing.wanted_exporters({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) == []
    assert not tracing.setup_tracing("test", env={})
    assert not tracing.enabled()


def test_traceparents_round_trip_and_garbage_names_none() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    context = tracing.parse_traceparent(value)
    assert context is not None and tracing.format_traceparent(context) == value
    assert tracing.trace_id_of(value) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", value[:-1], value.replace("4bf", "xyz")):
        assert tracing.parse_traceparent(bad) is None


def test_not_tracing_costs_no_span_and_carries_nothing() -> None:
    with tracing.span("anything") as span:
        assert span is None
        assert tracing.current_traceparent() is None


def test_a_span_continues_the_sagas_trace_and_links_what_belongs_to_another() -> None:
    saga = "00-11111111111111111111111111111111-2222222222222222-01"
    other = "00-33333333333333333333333333333333-4444444444444444-01"
    with in_memory_tracing() as exporter:
        # A report of another trace (a request that ended a work item): the saga's trace, linked.
        with tracing.span("apply", trace_of=saga, parent=other):
            pass
        # A message of the saga's trace: its parent.
        same = "00-11111111111111111111111111111111-5555555555555555-01"
        with tracing.span("apply", trace_of=saga, parent=same):
            pass
        # One saga of a batch: a trace of its own, linked to the request.
        with tracing.span("request", parent=other), tracing.span("submit", new_trace=True):
            pass
    linked, continued, submit, _request = exporter.get_finished_spans()
    assert linked.parent is not None and linked.parent.span_id == 0x2222222222222222
    assert [link.context.span_id for link in linked.links] == [0x4444444444444444]
    assert continued.parent is not None and continued.parent.span_id == 0x5555555555555555 and not continued.links
    assert submit.parent is None and submit.context is not None
    assert submit.context.trace_id != 0x33333333333333333333333333333333
    assert [link.context.trace_id for link in submit.links] == [0x33333333333333333333333333333333]


def test_a_text_line_is_one_line_whatever_the_message_carries() -> None:
    forged = "GET /x\n2026-01-01 00:00:00,000 INFO workyard.access: POST /api/v1/tokens 201"
    with log_context(tenant="acme\nINFO forged"):
        line = emit(TextFormatter(), forged)
    assert "\n" not in line and "\\n2026-01-01" in line and "tenant=acme\\nINFO forged" in line
