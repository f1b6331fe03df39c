"""One trace follows a request from its producer through Kafka, the worker, vLLM and the
aggregator (worker and aggregator in this process, so an in-memory exporter sees every span)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from llm_stream.worker.args import parse_worker_args
from tests.kafka_helpers import submit_batch
from tests.processes import SERVED_MODEL, TINY_ENGINE_FLAGS

pytestmark = [pytest.mark.engine, pytest.mark.broker]


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    exporter.clear()


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.name == name]
    assert len(matching) == 1, [span.name for span in spans]
    return matching[0]


async def test_one_trace_joins_producer_worker_engine_and_aggregator(
    spans: InMemorySpanExporter, isolated_settings: Settings, tiny_model: str
) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from llm_stream.engine.vllm_engine import VllmEngine

    settings = isolated_settings.with_overrides(topic_partitions=1)
    _, engine_args = parse_worker_args(["--model", tiny_model, *TINY_ENGINE_FLAGS])
    engine = await VllmEngine.start(engine_args)
    worker, aggregator = WorkerApp(settings, engine), AggregatorApp(settings)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(aggregator.run())]
    body = {"model": SERVED_MODEL, "prompt": "Kafka", "max_tokens": 5, "temperature": 0}
    line = {"custom_id": "traced", "method": "POST", "url": "/v1/completions", "body": body}
    try:
        with trace.get_tracer("upstream").start_as_current_span("upstream job") as parent:
            await submit_batch(settings, "traced", [line])
        deadline = time.monotonic() + 120
        while not aggregator.aggregator.is_finished("traced"):
            assert time.monotonic() < deadline, "batch not written"
            assert not any(task.done() for task in tasks)
            await asyncio.sleep(0.2)
    finally:
        worker.stopping.set()
        aggregator.stopping.set()
        await asyncio.gather(*tasks)
        await engine.close()

    finished = list(spans.get_finished_spans())
    trace_id = parent.get_span_context().trace_id
    in_trace = [span for span in finished if span.context.trace_id == trace_id]
    requests, results = settings.requests_topic, settings.results_topic
    produce = _one(in_trace, f"send {requests}")
    consume = _one(in_trace, f"process {requests}")
    engine_span = _one(in_trace, f"text_completion {SERVED_MODEL}")
    publish = _one(in_trace, f"send {results}")
    receive = _one(in_trace, f"receive {results}")
    chain = [produce, consume, engine_span]
    for child, parent_span in zip(chain[1:], chain[:-1], strict=True):
        assert child.parent is not None
        assert child.parent.span_id == parent_span.context.span_id
    assert publish.parent is not None
    assert publish.parent.span_id == consume.context.span_id
    assert receive.parent is not None
    assert receive.parent.span_id == publish.context.span_id

    assert consume.attributes is not None
    assert consume.attributes["messaging.system"] == "kafka"
    assert consume.attributes["messaging.destination.name"] == requests
    assert consume.attributes["messaging.consumer.group.name"] == settings.worker_group_id
    assert consume.attributes["messaging.destination.partition.id"] == "0"
    assert consume.attributes["llm_stream.custom_id"] == "traced"
    assert engine_span.attributes is not None
    assert engine_span.attributes["gen_ai.operation.name"] == "text_completion"
    assert engine_span.attributes["gen_ai.request.model"] == SERVED_MODEL
    assert engine_span.attributes["gen_ai.usage.output_tokens"] == 5
    assert engine_span.attributes["gen_ai.usage.input_tokens"] >= 1
    assert engine_span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert engine_span.attributes["llm_stream.engine.time_to_first_token_s"] > 0

    finalize = _one(finished, "finalize traced")
    assert [link.context.trace_id for link in finalize.links] == [trace_id]
    assert finalize.attributes is not None
    assert finalize.attributes["llm_stream.request_counts.completed"] == 1
