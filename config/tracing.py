"""Tracing (OpenTelemetry): set-up from the standard ``OTEL_*`` variables, and the helpers every
workyard span goes through.

Off unless configured: with no ``OTEL_TRACES_EXPORTER`` (or ``none``) and no OTLP endpoint, no SDK
is installed and every helper here returns at once (no span, no context, ``None`` for a
traceparent), so a process that does not trace pays one attribute read per would-be span.

A saga's trace crosses processes in workyard's own messages, not in Celery headers or in-process
context: the outbox is published after commit, perhaps by another process, and the coordinator
applies reports in batches. A dispatch, a report and the saga run each carry a W3C
``traceparent`` (``00-<trace id>-<span id>-<flags>``); :func:`span` continues the saga's trace
from whichever of them belongs to it, and links what belongs to another trace.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

# The exporters OTEL_TRACES_EXPORTER may name here: console (in the SDK) and otlp (when
# opentelemetry-exporter-otlp-proto-http, or -grpc with OTEL_EXPORTER_OTLP_PROTOCOL=grpc, is
# installed: the `otlp` extra).
EXPORTERS = ("console", "otlp")
# Span kinds, for callers that import nothing of OpenTelemetry themselves.
INTERNAL, SERVER, PRODUCER, CONSUMER = SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER
INSTRUMENTATION = "workyard"


class _State:
    tracer: trace.Tracer | None = None


_state = _State()


def enabled() -> bool:
    """Whether this process traces."""
    return _state.tracer is not None


def use_provider(provider: TracerProvider | None) -> None:
    """Trace through ``provider`` from now on (a test's, with an in-memory exporter), or not at
    all (None). :func:`setup_tracing` calls it with the provider it built."""
    _state.tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None


def wanted_exporters(env: Mapping[str, str]) -> list[str]:
    """The exporters the ``OTEL_*`` variables ask for; none: do not trace.

    ``OTEL_TRACES_EXPORTER`` names them (comma-separated; ``none``: none). Unset, an OTLP endpoint
    (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``) means ``otlp``, and nothing means
    no tracing: unlike the SDK's own auto-configuration, which exports OTLP to localhost by
    default, a workyard with no tracing configuration traces nothing."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER")
    if named is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [n for n in (part.strip().lower() for part in named.split(",")) if n and n != "none"]


def setup_tracing(default_service: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the OpenTelemetry SDK as the ``OTEL_*`` variables say (see :func:`wanted_exporters`);
    whether this process traces now. ``OTEL_SERVICE_NAME`` names the service (else
    ``default_service``); ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and the OTLP
    exporter's own variables apply as the SDK reads them. Call once per process, before it forks
    workers (the SDK's batch processor restarts its thread in a forked child)."""
    env = os.environ if env is None else env
    names = wanted_exporters(env)
    if not names or enabled():
        return enabled()
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    service = env.get("OTEL_SERVICE_NAME") or default_service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    installed = []
    for name in names:
        if name == "console":
            # One span per line, on the process's own stdout (Celery redirects sys.stdout in its
            # pool processes), written as each span ends: console is for looking, not for load.
            exporter = ConsoleSpanExporter(out=sys.__stdout__ or sys.stdout, formatter=_one_line)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif name == "otlp":
            otlp = _otlp_exporter(env)
            if otlp is None:
                continue
            provider.add_span_processor(BatchSpanProcessor(otlp))
        else:
            log.warning("OTEL_TRACES_EXPORTER names %r, which workyard does not know (it knows %s)", name, EXPORTERS)
            continue
        installed.append(name)
    if not installed:
        return False
    trace.set_tracer_provider(provider)
    use_provider(provider)
    log.info("tracing as %s, exporting to %s", service, ", ".join(installed))
    return True


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    transport = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter")
    except ImportError:
        log.warning(
            "OTLP tracing asked for, but opentelemetry-exporter-otlp-proto-%s is not installed "
            "(pip install 'workyard[otlp]')",
            transport,
        )
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()  # its endpoint, headers, ...: OTEL_EXPORTER_OTLP_*
    return exporter


# -- traceparents ------------------------------------------------------------------------------


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The span context a W3C ``traceparent`` names (as a remote parent); None if it names none."""
    if not value or len(value) != 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    try:
        version, trace_id, span_id, flags = int(value[:2], 16), int(value[3:35], 16), int(value[36:52], 16), value[53:]
        context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    except ValueError:
        return None
    return context if version != 0xFF and context.is_valid else None


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) in a ``traceparent``; None if there is none."""
    return traceparent[3:35] if traceparent is not None and parse_traceparent(traceparent) is not None else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span; None when not tracing or there is none."""
    if _state.tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format_traceparent(context) if context.is_valid else None


# -- spans -------------------------------------------------------------------------------------


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    trace_of: str | None = None,
    parent: str | None = None,
    links: Iterable[str | None] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
    new_trace: bool = False,
    current: bool = True,
) -> Iterator[Span | None]:
    """A span around the block, current inside it; None (and nothing recorded) when not tracing.

    Its parent: ``parent`` (a message's traceparent) if it belongs to the trace of ``trace_of``
    (a saga's traceparent), else the current span if that does, else ``trace_of`` itself; with
    no ``trace_of``, ``parent`` if given, else the current span. A candidate that is not the
    parent and belongs to another trace becomes a link (an item completed by a request of
    another trace, an operator's cancel), as do ``links``. ``new_trace``: a root span, the
    current span linked (one saga of a batch submit). ``current=False``: the span is not made
    current inside the block (several open side by side)."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    saga = parse_traceparent(trace_of)
    given = parse_traceparent(parent)
    active = trace.get_current_span().get_span_context()
    candidates = [c for c in (given, active if active.is_valid else None) if c is not None]
    chosen: SpanContext | None
    if new_trace:
        chosen = None
    elif saga is not None:
        chosen = next((c for c in candidates if c.trace_id == saga.trace_id), saga)
    else:
        chosen = given if given is not None else None
    found = [Link(c) for c in candidates if c is not chosen and (chosen is None or c.trace_id != chosen.trace_id)]
    found += [Link(c) for c in map(parse_traceparent, links) if c is not None]
    if chosen is not None:
        context: Context | None = trace.set_span_in_context(NonRecordingSpan(chosen))
    elif new_trace:
        context = Context()
    else:
        context = None  # the current span, if any
    if context is None and active.is_valid:
        found = [link for link in found if link.context is not active]
    if not current:
        with tracer.start_span(name, context=context, kind=kind, links=found, attributes=attributes) as opened:
            yield opened
        return
    with tracer.start_as_current_span(name, context=context, kind=kind, links=found, attributes=attributes) as opened:
        yield opened
