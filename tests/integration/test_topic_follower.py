"""A follower started before its topic exists waits for it, says so, then reads it all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.kafka.topics import ensure_topics
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.kafka_helpers import publish

pytestmark = pytest.mark.broker


async def test_a_follower_waits_for_its_topic_then_reads_it(isolated_settings: Settings) -> None:
    seen: list[bytes | None] = []

    async def on_records(records: Sequence[IncomingRecord]) -> None:
        for record in records:
            seen.append(record.value)

    follower = TopicFollower(isolated_settings, isolated_settings.batches_topic, on_records)
    following = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(20):
            while "no partitions" not in (follower.problem() or ""):
                assert not following.done(), following
                await asyncio.sleep(0.05)
        await ensure_topics(isolated_settings)
        settings = isolated_settings
        await publish(settings.bootstrap_servers, settings.batches_topic, [b"one", b"two"])
        async with asyncio.timeout(20):
            while len(seen) < 2:
                assert not following.done(), following
                await asyncio.sleep(0.05)
        assert sorted(value or b"" for value in seen) == [b"one", b"two"]
        assert follower.problem() is None
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
