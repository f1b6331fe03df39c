"""A record's priority reaches vLLM's serving layer as vLLM's own priority header, and only
when the engine schedules by priority (vLLM refuses a priority under first-come-first-served)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pydantic

from llm_stream.engine.protocol import EngineRequest
from llm_stream.engine.vllm_engine import PRIORITY_HEADER, VllmEngine


class _Answer(pydantic.BaseModel):
    id: str


def _engine(policy: str, seen: list[dict[str, str]]) -> VllmEngine:
    async def handler(parsed: Any, raw_request: Any) -> _Answer:
        seen.append(dict(raw_request.headers))
        return _Answer(id="cmpl-1")

    client = SimpleNamespace(
        errored=False, vllm_config=SimpleNamespace(scheduler_config=SimpleNamespace(policy=policy))
    )
    state = SimpleNamespace(openai_serving_completion=SimpleNamespace(create_completion=handler))
    return VllmEngine(client, state)


def _request(priority: int | None) -> EngineRequest:
    body = {"model": "m", "prompt": "hi"}
    return EngineRequest("POST", "/v1/completions", body, {"traceparent": "t"}, priority)


async def test_priority_goes_to_vllm_only_under_priority_scheduling() -> None:
    seen: list[dict[str, str]] = []
    await _engine("priority", seen).serve(_request(-5))
    await _engine("priority", seen).serve(_request(None))
    await _engine("fcfs", seen).serve(_request(-5))
    assert seen == [
        {"traceparent": "t", PRIORITY_HEADER: "-5"},
        {"traceparent": "t"},
        {"traceparent": "t"},
    ]


def test_the_header_is_the_one_vllms_serving_layer_reads() -> None:
    from vllm.entrypoints.generate.base.serving import PRIORITY_HEADER as VLLMS

    assert PRIORITY_HEADER == VLLMS
