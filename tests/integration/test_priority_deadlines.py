"""Priority and deadlines through a real broker with the echo engine: an urgent request
published behind a large batch is answered before most of it (by order, not by time), and a
request past its deadline is answered ``batch_expired`` without reaching the engine."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from llm_stream.client import BatchClient
from llm_stream.contracts import DEADLINE_HEADER, PRIORITY_HEADER
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect

pytestmark = pytest.mark.broker

BATCH_LINES = 2_000


async def _publish_one(
    settings: Settings, batch_id: str, custom_id: str, headers: dict[str, str]
) -> None:
    """A single request from a plain producer, its priority or deadline in its headers."""
    line = {"batch_id": batch_id, "custom_id": custom_id, "url": "/v1/completions"}
    value = orjson.dumps({**line, "body": {"prompt": custom_id}})
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.requests_topic,
            value,
            key=f"{batch_id}/{custom_id}".encode(),
            headers=[(name, text.encode()) for name, text in headers.items()],
        )
    finally:
        await producer.stop()


async def _run_worker(settings: Settings, engine: FakeEngine, expected: int) -> list[dict]:
    """Start a worker on what is already published; return the results in topic order."""
    worker = WorkerApp(settings, engine)
    working = asyncio.create_task(worker.run())
    try:
        return await collect(
            settings.bootstrap_servers,
            settings.results_topic,
            lambda results: len(results) >= expected,
            within=120,
        )
    finally:
        worker.stopping.set()
        assert await asyncio.wait_for(working, 60) == 0


async def test_an_urgent_request_behind_a_large_batch_is_answered_before_most_of_it(
    isolated_settings: Settings,
) -> None:
    # One partition each: the results topic's order is the order of the answers.
    settings = isolated_settings.with_overrides(topic_partitions=1, max_in_flight=4)
    await ensure_topics(settings)
    lines = [
        {"custom_id": f"c{i}", "url": "/v1/completions", "body": {"prompt": f"p{i}"}}
        for i in range(BATCH_LINES)
    ]
    async with BatchClient.from_settings(settings) as client:
        await client.submit(lines, batch_id="bulk", endpoint="/v1/completions", priority=10)
    await _publish_one(settings, "interactive", "urgent", {PRIORITY_HEADER: "-1"})
    engine = FakeEngine(concurrency=4)
    engine.latency_s = 0.002
    results = await _run_worker(settings, engine, BATCH_LINES + 1)
    order = [result["custom_id"] for result in results]
    assert sorted(order) == sorted([*(f"c{i}" for i in range(BATCH_LINES)), "urgent"])
    # Published last, without priority it would be answered last (FIFO): it overtakes the
    # bulk of the batch.
    assert order.index("urgent") < BATCH_LINES // 10, order.index("urgent")
    # FIFO within a priority: each line starts in its turn; answers of the four in the engine
    # at once may finish in any order.
    bulk = [custom_id for custom_id in order if custom_id != "urgent"]
    assert all(abs(bulk.index(f"c{i}") - i) < 4 for i in range(BATCH_LINES))
    started = [request.body["prompt"] for request in engine.seen]
    assert started.index("urgent") < BATCH_LINES // 10
    assert {request.priority for request in engine.seen} == {10, -1}


async def test_a_request_past_its_deadline_is_answered_expired_and_never_runs(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(topic_partitions=1)
    await ensure_topics(settings)
    past = str(time.time() - 1)
    for custom_id in ("late-1", "late-2"):
        await _publish_one(settings, "deadlines", custom_id, {DEADLINE_HEADER: past})
    await _publish_one(settings, "deadlines", "in-time", {DEADLINE_HEADER: str(time.time() + 600)})
    engine = FakeEngine()
    results = await _run_worker(settings, engine, 3)
    by_id = {result["custom_id"]: result for result in results}
    assert set(by_id) == {"late-1", "late-2", "in-time"}
    for custom_id in ("late-1", "late-2"):
        assert by_id[custom_id]["response"] is None
        assert by_id[custom_id]["error"]["code"] == "batch_expired"
    assert by_id["in-time"]["response"]["status_code"] == 200
    assert [request.body["prompt"] for request in engine.seen] == ["in-time"]
