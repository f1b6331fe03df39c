"""OpenTelemetry tracing: set-up, W3C context in Kafka headers, semantic-convention attributes.

A request's trace starts at its producer (its ``traceparent`` header) and continues through the
worker's process span, the engine span and the publish span, whose context the result message
carries on to the aggregator. FastStream's telemetry middleware traces a batch consume as one
span and parents publishes to that batch, so per-request spans are made here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

from llm_stream._version import __version__
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

TRACER_NAME = "llm-stream"

#: Endpoint -> gen_ai.operation.name: the conventions' names where they have one (a Responses
#: request is a chat turn), vLLM's API names for score, rerank and audio. One per endpoint, so
#: they also bound the ``endpoint`` label of the worker's metrics.
GEN_AI_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/score": "score",
    "/v1/score": "score",
    "/rerank": "rerank",
    "/v1/rerank": "rerank",
    "/v2/rerank": "rerank",
    "/v1/audio/transcriptions": "transcription",
    "/v1/audio/translations": "translation",
}


def tracer() -> trace.Tracer:
    return _tracer()


@functools.cache
def _tracer() -> trace.Tracer:
    """One tracer (``get_tracer`` costs tens of microseconds); taken from the proxy provider,
    it follows the provider installed later."""
    return trace.get_tracer(TRACER_NAME, __version__)


def tracing_enabled() -> bool:
    """Whether a tracer provider is installed. Without one every span is a no-op, but building
    it still costs microseconds: per-record spans on hot paths are skipped instead."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def configure_tracing(settings: Settings, service_name: str) -> None:
    """Install the global tracer provider with the configured exporter (none: no-op spans)."""
    if settings.otel_exporter == "none":
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__}),
        span_limits=SpanLimits(max_links=settings.trace_link_limit),
    )
    if settings.otel_exporter == "console":
        # stderr: stdout carries command output (submit prints the batch id).
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class _NoSpan:
    """What ``span`` gives without tracing: the invalid span, which records nothing."""

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(
    name: str,
    *,
    kind: trace.SpanKind,
    headers: Mapping[str, str] | None = None,
    attributes: Callable[[], Mapping[str, Any]] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A current span (child of the trace in ``headers``, if given); where no tracer provider
    is installed, the invalid span, without building a no-op one per record: on a worker's
    and an aggregator's hot paths that cost as much as the rest of a record's handling."""
    if not tracing_enabled():
        return _NO_SPAN
    return tracer().start_as_current_span(
        name,
        context=None if headers is None else context_from_headers(headers),
        kind=kind,
        attributes=None if attributes is None else dict(attributes()),
    )


def outgoing_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """Trace headers for a message sent on: the current span's context where tracing is on,
    else the upstream ones unchanged (a trace passes through a process that records none)."""
    return headers_with_context(upstream) if tracing_enabled() else dict(upstream)


def context_from_headers(headers: Mapping[str, str]) -> Context:
    return propagate.extract(dict(headers))


def headers_with_context(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus the current span's W3C trace context (traceparent, tracestate, baggage)."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def messaging_attributes(
    record: IncomingRecord, operation: str, consumer_group: str | None = None
) -> dict[str, Any]:
    """OpenTelemetry messaging semantic conventions for one Kafka record."""
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if consumer_group is not None:
        attributes["messaging.consumer.group.name"] = consumer_group
    if record.key is not None:
        attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
    return attributes


def publish_attributes(topic: str, key: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key
    return attributes


def gen_ai_request_attributes(url: str, body: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": GEN_AI_OPERATIONS.get(url, url),
        "gen_ai.provider.name": "vllm",
    }
    for key, name in (
        ("model", "gen_ai.request.model"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("seed", "gen_ai.request.seed"),
        ("n", "gen_ai.request.choice.count"),
    ):
        value = body.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            attributes[name] = value
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int):
        attributes["gen_ai.request.max_tokens"] = max_tokens
    return attributes


def gen_ai_response_attributes(body: Mapping[str, Any] | None) -> dict[str, Any]:
    if not body or "error" in body:
        return {}
    attributes: dict[str, Any] = {}
    if isinstance(body.get("id"), str):
        attributes["gen_ai.response.id"] = body["id"]
    if isinstance(body.get("model"), str):
        attributes["gen_ai.response.model"] = body["model"]
    usage = body.get("usage") or {}
    # Chat and completions name them prompt/completion, the Responses API input/output.
    for ours, theirs, name in (
        ("prompt_tokens", "input_tokens", "gen_ai.usage.input_tokens"),
        ("completion_tokens", "output_tokens", "gen_ai.usage.output_tokens"),
    ):
        value = usage.get(ours, usage.get(theirs))
        if isinstance(value, int):
            attributes[name] = value
    reasons = [c.get("finish_reason") for c in body.get("choices") or [] if isinstance(c, dict)]
    if reasons and all(isinstance(r, str) for r in reasons):
        attributes["gen_ai.response.finish_reasons"] = reasons
    return attributes
