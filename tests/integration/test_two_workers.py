"""Two workers in one group answer a batch that lands in the files exactly once, whether the
broker splits the partitions between them or (as the embedded broker often does) hands all of
them to both: then both answer every request, and the aggregator keeps one line each."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import submit_batch

pytestmark = pytest.mark.broker

REQUESTS = 200


async def test_two_workers_write_each_request_once_in_the_files(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(
        topic_partitions=4, session_timeout_ms=6000, heartbeat_interval_ms=1000, max_in_flight=8
    )
    workers = [WorkerApp(settings, FakeEngine()), WorkerApp(settings, FakeEngine())]
    aggregator = AggregatorApp(settings)
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    aggregating = asyncio.create_task(aggregator.run())
    try:
        await asyncio.sleep(8)  # both joined: let the group settle before the batch arrives
        lines = [
            {"custom_id": f"c{i}", "url": "/v1/completions", "body": {"prompt": f"p{i}"}}
            for i in range(REQUESTS)
        ]
        await submit_batch(settings, "two", lines)
        deadline = time.monotonic() + 90
        while not aggregator.aggregator.is_finished("two"):
            assert time.monotonic() < deadline, "the batch was never written"
            assert not any(task.done() for task in tasks), "a worker stopped"
            await asyncio.sleep(0.2)
        assignments = [
            sorted(tp.partition for tp in worker.consumer.assignment()) for worker in workers
        ]
    finally:
        for worker in workers:
            worker.stopping.set()
        aggregator.stopping.set()
        codes = [await asyncio.wait_for(task, 60) for task in tasks]
        await asyncio.wait_for(aggregating, 60)
    assert codes == [0, 0]
    served = [len(worker.engine.seen) for worker in workers]  # type: ignore[attr-defined]
    assert sum(served) >= REQUESTS
    output = (settings.output_dir / "two" / "output.jsonl").read_bytes().splitlines()
    ids = sorted(orjson.loads(line)["custom_id"] for line in output)
    assert ids == sorted(f"c{i}" for i in range(REQUESTS))
    print(f"assignments {assignments}, requests served per worker {served}")
