"""Batches that ended before the retention are retired from the compacted topics, once.

A real broker: the sweep reads the batch-status topic from its start and publishes tombstones on
the status and batches topics for owned batches that ended long ago; a batch still running or
ended recently is kept; a second sweep finds the tombstones and retires nothing again. The
manifest reader and the topic follower see the follower's caught-up flag on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer

from llm_stream.aggregator.retirement import retire_history
from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.kafka.topics import ensure_topics
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.kafka_helpers import publish

pytestmark = pytest.mark.broker

DAY = 86400


def _status(batch_id: str, status: BatchStatus, at: int) -> bytes:
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=1)
    batch = batch_object(manifest, status, reached_at={status: at})
    return batch.model_copy(update={"created_at": at - 10}).model_dump_json().encode()


async def _send(settings: Settings, topic: str, key: bytes, value: bytes | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _records(settings: Settings, topic: str) -> list[IncomingRecord]:
    """Every record of ``topic``, read by a follower until it caught up."""
    seen: list[IncomingRecord] = []

    async def on_records(records: Sequence[IncomingRecord]) -> None:
        seen.extend(records)

    follower = TopicFollower(settings, topic, on_records)
    following = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(20):
            while not follower.caught_up:  # noqa: ASYNC110 (a flag the follower sets)
                await asyncio.sleep(0.05)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    return seen


async def _latest(settings: Settings, topic: str) -> dict[str, bytes | None]:
    return {(r.key or b"").decode(): r.value for r in await _records(settings, topic)}


async def test_batches_ended_before_the_retention_get_tombstones_once(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(batch_retention_s=7 * DAY)
    await ensure_topics(settings)
    now = int(time.time())
    history = {
        "old-done": [
            (BatchStatus.IN_PROGRESS, now - 30 * DAY),
            (BatchStatus.COMPLETED, now - 20 * DAY),
        ],
        "old-cancelled": [(BatchStatus.CANCELLED, now - 9 * DAY)],
        "old-other-owner": [(BatchStatus.FAILED, now - 9 * DAY)],
        "recent": [(BatchStatus.COMPLETED, now - DAY)],
        "running": [(BatchStatus.IN_PROGRESS, now - 30 * DAY)],
    }
    for batch_id, statuses in history.items():
        values = [_status(batch_id, status, at) for status, at in statuses]
        await publish(
            settings.bootstrap_servers, settings.batch_status_topic, values, batch_id.encode()
        )
        await publish(
            settings.bootstrap_servers, settings.batches_topic, [b"{}"], batch_id.encode()
        )

    judged = {  # key: its records, oldest first
        b"old-done/c1": [b'{"verdict": "gold"}'],
        b"old-done/c/2": [b'{"verdict": "gold"}', b'{"verdict": "rejected"}'],
        b"old-done/c3": [b'{"verdict": "gold"}', None],  # deleted already: left as it is
        b"old-other-owner/c1": [b'{"verdict": "gold"}'],
        b"recent/c1": [b'{"verdict": "gold"}'],
    }
    for key, records in judged.items():
        for value in records:  # ``publish`` sends no None: a tombstone by itself
            await _send(settings, settings.judgements_topic, key, value)

    def owns(batch_id: str) -> bool:
        return batch_id != "old-other-owner"

    retired = await retire_history(settings, owns, now=now)
    assert sorted(retired) == ["old-cancelled", "old-done"]
    assert await retire_history(settings, owns, now=now) == []  # their tombstones are read

    judgements = await _latest(settings, settings.judgements_topic)
    assert {key for key, value in judgements.items() if value is None} == {
        "old-done/c1",
        "old-done/c/2",
        "old-done/c3",
    }
    # 7 published, then a tombstone each for c1 and c/2 (c3 had one): none twice
    assert len(await _records(settings, settings.judgements_topic)) == 9

    seen: dict[str, list[bytes | None]] = {}

    async def on_records(records: Sequence[IncomingRecord]) -> None:
        for record in records:
            seen.setdefault((record.key or b"").decode(), []).append(record.value)

    follower = TopicFollower(settings, settings.batches_topic, on_records)
    following = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(20):
            while not follower.caught_up:  # noqa: ASYNC110 (a flag the follower sets)
                await asyncio.sleep(0.05)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    assert {batch_id for batch_id, values in seen.items() if values[-1] is None} == set(retired)
    assert len(seen) == len(history)
