"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (the `traces`
extra: SDK, OTLP exporter, ASGI / asyncpg / redis-py instrumentation).

On: spans for every HTTP request (the ASGI middleware, outermost), every asyncpg and
redis-py call (their instrumentors), and each projection batch of a partition. A write
records its trace context (W3C traceparent) in its event row, and the batch that
projects the event links to it: from a write's trace one finds the batch that made it
visible, and from a batch every write it carried.

Off: nothing of OpenTelemetry is imported, no middleware is added, nothing is
instrumented; the two calls the hot paths make (`traceparent`, `batch`) test one
module flag and return.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
MAX_LINKS = 64  # links per batch span: a batch of 500 events keeps its first 64 writes

_tracer: Any = None
_instrumented: list[Any] = []


def enabled() -> bool:
    return _tracer is not None


def configure(service: str, exporter: Any = None) -> bool:
    """Turn tracing on for this process when OTEL_EXPORTER_OTLP_ENDPOINT is set (or an
    `exporter` is given: tests pass the SDK's in-memory one). True when on."""
    global _tracer
    if _tracer is not None:
        return True
    if exporter is None and not os.environ.get(ENDPOINT_ENV):
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrumentors: list[Any] = [AsyncPGInstrumentor(), RedisInstrumentor()]  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
        _instrumented.append(instrumentor)
    _tracer = provider.get_tracer("items")
    return True


def shutdown() -> None:
    """Tracing off again (tests): the instrumentors undone, the spans flushed."""
    global _tracer
    for instrumentor in _instrumented:
        instrumentor.uninstrument()
    _instrumented.clear()
    if _tracer is not None:
        from opentelemetry import trace

        provider: Any = trace.get_tracer_provider()
        with contextlib.suppress(Exception):
            provider.force_flush()
    _tracer = None


def asgi_middleware() -> Any:
    """OpenTelemetry's ASGI middleware class (a server span per request)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware


def traceparent() -> str | None:
    """The current span's context as a W3C traceparent, to store with an event; None
    when tracing is off or no span is current."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def batch(partition: int, events: int, contexts: Sequence[str | None]) -> Iterator[None]:
    """A span for one partition's batch, linked to the writes whose events it applies."""
    if _tracer is None:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    links: list[Any] = []
    propagator = TraceContextTextMapPropagator()
    for raw in contexts:
        if raw and len(links) < MAX_LINKS:
            span = trace.get_current_span(propagator.extract({"traceparent": raw}))
            links.append(trace.Link(span.get_span_context()))
    attributes = {"items.partition": partition, "items.events": events}
    with _tracer.start_as_current_span("projection.batch", links=links, attributes=attributes):
        yield
