"""Tracing: a request's trace continues through Kafka headers; without a tracer provider no span
is built at all (hot paths); attributes follow OpenTelemetry's semantic conventions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_stream.ops import telemetry
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

TRACE_ID, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
UPSTREAM = {"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, spans kept in memory; the global provider is left alone."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("test"))
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: True)
    yield exporter
    provider.shutdown()


def test_without_tracing_no_span_is_built_and_headers_pass_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: False)
    monkeypatch.setattr(telemetry, "tracer", lambda: pytest.fail("a span was built"))
    with telemetry.span("process", kind=trace.SpanKind.CONSUMER, headers=UPSTREAM) as span:
        assert span is trace.INVALID_SPAN
    assert telemetry.outgoing_headers(UPSTREAM) == UPSTREAM


def test_a_span_continues_the_trace_its_headers_carry_and_passes_it_on(
    exporter: InMemorySpanExporter,
) -> None:
    with telemetry.span(
        "process",
        kind=trace.SpanKind.CONSUMER,
        headers=UPSTREAM,
        attributes=lambda: {"llm_stream.custom_id": "c1"},
    ) as span:
        outgoing = telemetry.outgoing_headers({"other": "kept"})
        own_span_id = format(span.get_span_context().span_id, "016x")
    [finished] = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == TRACE_ID
    assert finished.parent is not None
    assert format(finished.parent.span_id, "016x") == PARENT
    assert finished.attributes == {"llm_stream.custom_id": "c1"}
    assert outgoing["other"] == "kept"
    assert outgoing["traceparent"] == f"00-{TRACE_ID}-{own_span_id}-01"


def test_no_exporter_configured_installs_no_provider() -> None:
    before = trace.get_tracer_provider()
    telemetry.configure_tracing(Settings(otel_exporter="none"), "llm-stream-test")
    assert trace.get_tracer_provider() is before


def test_a_records_messaging_attributes_name_where_it_was_read() -> None:
    record = IncomingRecord("requests", 3, 41, b"{}", key=b"b1")
    assert telemetry.messaging_attributes(record, "process", "workers") == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "requests",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 41,
        "messaging.consumer.group.name": "workers",
        "messaging.kafka.message.key": "b1",
    }
    keyless = telemetry.messaging_attributes(IncomingRecord("requests", 0, 0, None), "receive")
    assert "messaging.kafka.message.key" not in keyless
    assert "messaging.consumer.group.name" not in keyless


def test_publish_attributes_name_the_topic_and_key() -> None:
    attributes = telemetry.publish_attributes("results", "b1")
    assert attributes["messaging.destination.name"] == "results"
    assert attributes["messaging.kafka.message.key"] == "b1"
    assert "messaging.kafka.message.key" not in telemetry.publish_attributes("results", None)


def test_request_attributes_take_the_sampling_values_that_are_numbers_or_text() -> None:
    body = {
        "model": "tiny",
        "temperature": 0.5,
        "top_p": True,  # a bool is no value of its own
        "seed": 7,
        "n": "2",
        "max_tokens": 10,
        "max_completion_tokens": 20,
    }
    assert telemetry.gen_ai_request_attributes("/v1/chat/completions", body) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "tiny",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.seed": 7,
        "gen_ai.request.choice.count": "2",
        "gen_ai.request.max_tokens": 20,
    }
    other = telemetry.gen_ai_request_attributes("/v1/other", {"max_tokens": 3})
    assert other["gen_ai.operation.name"] == "/v1/other"
    assert other["gen_ai.request.max_tokens"] == 3


def test_response_attributes_come_from_an_answer_not_an_error() -> None:
    body = {
        "id": "cmpl-1",
        "model": "tiny",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}],
    }
    assert telemetry.gen_ai_response_attributes(body) == {
        "gen_ai.response.id": "cmpl-1",
        "gen_ai.response.model": "tiny",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ["stop", "length"],
    }
    assert telemetry.gen_ai_response_attributes({"error": {"message": "x"}, "id": "e"}) == {}
    assert telemetry.gen_ai_response_attributes(None) == {}
    unfinished = {"choices": [{"finish_reason": "stop"}, {"finish_reason": None}]}
    assert "gen_ai.response.finish_reasons" not in telemetry.gen_ai_response_attributes(unfinished)


def test_a_responses_answer_reports_its_tokens_and_every_endpoint_has_an_operation() -> None:
    body = {"id": "resp_1", "model": "tiny", "usage": {"input_tokens": 5, "output_tokens": 2}}
    attributes = telemetry.gen_ai_response_attributes(body)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        5,
        2,
    )
    from llm_stream.contracts import SUPPORTED_ENDPOINTS

    assert set(telemetry.GEN_AI_OPERATIONS) == set(SUPPORTED_ENDPOINTS)
    assert telemetry.GEN_AI_OPERATIONS["/v1/responses"] == "chat"
