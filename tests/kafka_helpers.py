"""Small Kafka helpers for tests: publish values, submit a batch, collect results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llm_stream.client import BatchClient, BatchHandle
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings


async def publish(
    bootstrap: str, topic: str, values: Iterable[bytes], key: bytes | None = None
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for value in values]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def collect(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    within: float,
    *,
    settle: float = 0.0,
    decode: Callable[[bytes], Any] = orjson.loads,
) -> list[Any]:
    """Read JSON values from the start of ``topic`` until ``done`` holds (then ``settle`` more
    seconds, to catch duplicates) or ``within`` seconds pass."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[Any] = []
    try:
        deadline = time.monotonic() + within
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batches = await consumer.getmany(timeout_ms=500)
            values += [decode(r.value) for records in batches.values() for r in records]
            if settle_until is None and done(values):
                settle_until = time.monotonic() + settle
        return values
    finally:
        await consumer.stop()


async def submit_batch(
    settings: Settings,
    batch_id: str,
    lines: Iterable[dict[str, Any]],
    endpoint: str = "/v1/completions",
) -> BatchHandle:
    """Create the topics, then submit ``lines`` through the client library."""
    await ensure_topics(settings)
    async with BatchClient.from_settings(settings) as client:
        return await client.submit(list(lines), batch_id=batch_id, endpoint=endpoint)
