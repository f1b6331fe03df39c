"""A record's priority reaches vLLM's scheduler: a worker pipeline on the tiny model, run with
``--scheduling-policy priority``, hands each request to the engine client with the record's
priority (what vLLM's engine core schedules by), and vLLM serves it."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
import pytest

from llm_stream.contracts import PRIORITY_HEADER
from llm_stream.protocols import IncomingRecord
from llm_stream.worker.core import RequestPipeline
from llm_stream.worker.waiting import WaitingQueue
from tests.fakes import FakePublisher
from tests.processes import SERVED_MODEL, TINY_ENGINE_FLAGS

pytestmark = pytest.mark.engine


def _record(offset: int, priority: int | None) -> IncomingRecord:
    body = {"model": SERVED_MODEL, "prompt": f"item {offset}", "max_tokens": 2}
    line = {"batch_id": "b", "custom_id": f"c{offset}", "url": "/v1/completions", "body": body}
    headers = {} if priority is None else {PRIORITY_HEADER: str(priority)}
    return IncomingRecord("requests", 0, offset, orjson.dumps(line), None, headers)


async def test_the_records_priority_reaches_vllms_engine_client(tiny_model: str) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from llm_stream.engine.vllm_engine import VllmEngine
    from llm_stream.worker.args import parse_worker_args

    flags = [*TINY_ENGINE_FLAGS, "--scheduling-policy", "priority"]
    _, engine_args = parse_worker_args(["--model", tiny_model, *flags])
    engine = await VllmEngine.start(engine_args)
    client = engine._engine
    priorities: list[int] = []
    add_request = client.add_request

    async def spying(*args: Any, **kwargs: Any) -> Any:
        priorities.append(kwargs.get("priority", 0))
        return await add_request(*args, **kwargs)

    client.add_request = spying
    publisher = FakePublisher()
    pipeline = RequestPipeline(
        engine, publisher, max_in_flight=1, waiting=WaitingQueue(max_records=10, max_bytes=10**6)
    )
    await pipeline.assigned({("requests", 0): 0})
    try:
        await pipeline.handle([_record(0, 7), _record(1, None), _record(2, -3)])
        async with asyncio.timeout(120):
            while len(publisher.results) < 3:
                assert not pipeline.failed.is_set()
                await asyncio.sleep(0.05)
    finally:
        await engine.close()
    assert client.vllm_config.scheduler_config.policy == "priority"
    # One at a time, most urgent first: the one that names none counts as 0.
    assert priorities == [-3, 0, 7]
    statuses = [result.response.status_code for result, _ in publisher.results]
    assert statuses == [200, 200, 200]
    assert [result.custom_id for result, _ in publisher.results] == ["c2", "c1", "c0"]
