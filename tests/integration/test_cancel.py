"""Cancelling a running batch through a real broker: the worker stops running it, every request
still ends in one line, and the aggregator writes the batch as ``cancelled``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.batch.status import BatchStatus
from llm_stream.client import BatchClient
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect

pytestmark = pytest.mark.broker

REQUESTS = 200
CANCEL_AFTER = 20
SLOW = 3
BATCH = "to-cancel"


async def _uncommitted(settings: Settings) -> int:
    """Records of the requests topic past the worker group's committed offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=settings.worker_group_id
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.requests_topic, p)
            for p in consumer.partitions_for_topic(settings.requests_topic) or ()
        ]
        ends = await consumer.end_offsets(partitions)
        behind = 0
        for partition in partitions:
            behind += ends[partition] - ((await consumer.committed(partition)) or 0)
        return behind
    finally:
        await consumer.stop()


async def test_a_batch_cancelled_while_it_runs_ends_cancelled_with_one_line_per_request(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(topic_partitions=2, max_in_flight=8)
    await ensure_topics(settings)
    prompts = [f"p{i}" for i in range(REQUESTS)]
    # The first lines of each partition are taken first: three of them outlast the test unless
    # the cancel aborts them; the others keep the engine busy with staggered ends.
    delays = {prompt: 0.05 + (i % 4) * 0.05 for i, prompt in enumerate(prompts)}
    delays.update(dict.fromkeys(prompts[:SLOW], 300.0))
    worker = WorkerApp(settings, FakeEngine(delays=delays))
    aggregator = AggregatorApp(settings)
    working = asyncio.create_task(worker.run())
    aggregating = asyncio.create_task(aggregator.run())
    try:
        async with BatchClient.from_settings(settings) as client:
            lines = [
                {"custom_id": f"c{i}", "url": "/v1/completions", "body": {"prompt": prompt}}
                for i, prompt in enumerate(prompts)
            ]
            handle = await client.submit(lines, batch_id=BATCH, endpoint="/v1/completions")
            deadline = time.monotonic() + 60
            while aggregator.aggregator.received(BATCH) < CANCEL_AFTER:
                assert time.monotonic() < deadline, "the batch never got going"
                await asyncio.sleep(0.05)
            asked = await handle.cancel()
            assert asked is not None
            assert asked.status is BatchStatus.CANCELLING
            final = await handle.wait(timeout=60)
        assert final is not None
        assert final.status is BatchStatus.CANCELLED
        deadline = time.monotonic() + 30
        while (uncommitted := await _uncommitted(settings)) > 0:
            assert time.monotonic() < deadline, f"{uncommitted} requests never committed"
            await asyncio.sleep(0.5)
        assert not working.done(), "the worker exited"
    finally:
        worker.stopping.set()
        aggregator.stopping.set()
        assert await asyncio.wait_for(working, 60) == 0
        await asyncio.wait_for(aggregating, 60)

    assert final.cancelling_at == asked.cancelling_at
    assert final.cancelled_at is not None
    assert final.request_counts.total == REQUESTS
    assert final.request_counts.completed >= CANCEL_AFTER
    assert final.request_counts.failed > 0
    assert final.request_counts.completed + final.request_counts.failed == REQUESTS
    assert final.usage.output_tokens == 2 * final.request_counts.completed  # the echo's 2 each
    directory = settings.output_dir / BATCH
    output = [orjson.loads(line) for line in (directory / "output.jsonl").read_bytes().splitlines()]
    errors = [orjson.loads(line) for line in (directory / "error.jsonl").read_bytes().splitlines()]
    assert Counter(line["custom_id"] for line in output + errors) == Counter(
        f"c{i}" for i in range(REQUESTS)
    )
    assert all(line["response"]["status_code"] == 200 for line in output)
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert all(line["response"] is None for line in errors)
    # The engine ran only what it had taken before the cancel reached the worker, and what was
    # still running then (the slow ones at least) was aborted, not waited for.
    served = len(worker.engine.seen)  # type: ignore[attr-defined]
    assert served < REQUESTS / 2
    aborted = served - final.request_counts.completed
    assert aborted >= SLOW
    assert {f"c{i}" for i in range(SLOW)} <= {line["custom_id"] for line in errors}

    statuses = await collect(
        settings.bootstrap_servers,
        settings.batch_status_topic,
        lambda got: any(s["status"] == "cancelled" for s in got),
        within=30,
    )
    sequence = [s["status"] for s in statuses if s["id"] == BATCH]
    assert sequence[-1] == "cancelled"
    assert sequence[-2] == "cancelling"  # the aggregator's own, after any racing progress
    print(
        f"cancelled after {final.request_counts.completed} results; {served} requests reached "
        f"the engine, {aborted} of them aborted; statuses {sequence}"
    )
