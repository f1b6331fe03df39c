"""A worker that dies mid-batch loses nothing: another worker takes over its partitions and
the batch's files still hold exactly one line per request (fake engine, real broker)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect, submit_batch

pytestmark = pytest.mark.broker

REQUESTS = 40


async def test_a_crashed_workers_requests_are_answered_once_in_the_files(
    isolated_settings: Settings,
) -> None:
    # 6 s: the smallest session timeout a default Apache Kafka accepts.
    settings = isolated_settings.with_overrides(
        topic_partitions=2, session_timeout_ms=6000, heartbeat_interval_ms=1000, max_in_flight=4
    )
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": "fake", "prompt": f"p{i}"},
        }
        for i in range(REQUESTS)
    ]
    await submit_batch(settings, "failover", lines)
    slow = FakeEngine(delays={f"p{i}": 0.3 for i in range(REQUESTS)})
    first = WorkerApp(settings, slow)
    first_run = asyncio.create_task(first.run())
    aggregator = AggregatorApp(settings)
    aggregating = asyncio.create_task(aggregator.run())
    try:
        await collect(
            settings.bootstrap_servers, settings.results_topic, lambda got: len(got) >= 6, 60
        )
        first_run.cancel()  # a crash: no drain, in-flight requests never answered
        with contextlib.suppress(asyncio.CancelledError):
            await first_run
        second = WorkerApp(settings, FakeEngine())
        second_run = asyncio.create_task(second.run())
        deadline = time.monotonic() + 90
        while not aggregator.aggregator.is_finished("failover"):
            assert time.monotonic() < deadline, "the batch was never completed"
            assert not aggregating.done()
            await asyncio.sleep(0.2)
        second.stopping.set()
        assert await asyncio.wait_for(second_run, 30) == 0
    finally:
        aggregator.stopping.set()
        await asyncio.wait_for(aggregating, 30)

    batch_dir = settings.output_dir / "failover"
    output = [orjson.loads(line) for line in (batch_dir / "output.jsonl").read_bytes().splitlines()]
    assert sorted(line["custom_id"] for line in output) == sorted(f"c{i}" for i in range(REQUESTS))
    assert (batch_dir / "error.jsonl").read_bytes() == b""
    assert len(slow.seen) < REQUESTS  # the first worker really died part-way
