"""What the worker's metrics and spans record of each answer: vLLM's own timings, status
codes, tokens and end-to-end latency."""

from __future__ import annotations

import time

from opentelemetry.trace import Span

from llm_stream.batch.usage import response_tokens
from llm_stream.contracts import ResponseData
from llm_stream.engine.protocol import EngineTimings
from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord


def observe_timings(span: Span, endpoint: str, timings: EngineTimings) -> None:
    for name, value in (
        ("llm_stream.engine.queue_time_s", timings.queue),
        ("llm_stream.engine.time_to_first_token_s", timings.time_to_first_token),
        ("llm_stream.engine.generation_time_s", timings.generation),
    ):
        if value is not None:
            span.set_attribute(name, value)
    if timings.time_to_first_token is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(endpoint).observe(timings.time_to_first_token)


def observe_answer(record: IncomingRecord, endpoint: str, response: ResponseData) -> None:
    status = str(response.status_code)
    metrics.REQUESTS_ANSWERED.labels(endpoint, status).inc()
    if response.status_code != 200:
        metrics.REQUESTS_FAILED.labels(endpoint, status).inc()
    tokens = response_tokens(response.body)
    if tokens.input:
        metrics.PROMPT_TOKENS.labels(endpoint).inc(tokens.input)
    if tokens.output:
        metrics.COMPLETION_TOKENS.labels(endpoint).inc(tokens.output)
    if record.timestamp_ms is not None:
        latency = max(0.0, time.time() - record.timestamp_ms / 1000)
        metrics.END_TO_END_LATENCY.labels(endpoint).observe(latency)
