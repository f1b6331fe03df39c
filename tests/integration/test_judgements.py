"""Judgements on a real broker: published by one process (the Label Studio pull, another
gateway), followed by a gateway's ``KafkaJudgements`` (the last judgement of a line wins), and
a batch's read once by ``read_judgements`` for an export."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_stream.contracts import Judgement
from llm_stream.curation.judgements import KafkaJudgements, publish_judgements, read_judgements
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings

pytestmark = pytest.mark.broker


def _judged(batch_id: str, line: str, verdict: str, at: float) -> Judgement:
    return Judgement(batch_id=batch_id, custom_id=line, verdict=verdict, judged_at=at)  # type: ignore[arg-type]


async def test_judgements_are_followed_and_read_per_batch(isolated_settings: Settings) -> None:
    settings = isolated_settings
    await ensure_topics(settings, [settings.judgements_topic])
    published = [
        _judged("batch_a", "c1", "rejected", 1),
        _judged("batch_a", "c1", "accepted", 2),
        _judged("batch_a", "c2", "gold", 1),
        _judged("batch_b", "c1", "rejected", 1),
    ]
    assert await publish_judgements(settings, published) == 4

    follower = KafkaJudgements(settings)
    await follower.start()
    try:
        deadline = time.monotonic() + 20
        while (
            len(follower.of_batch("batch_a")) < 2
            or follower.of_line("batch_a", "c1") is None
            or follower.of_line("batch_a", "c1").verdict != "accepted"
        ):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the follower did not catch up"
            await asyncio.sleep(0.1)
        assert [j.verdict for j in follower.of_batch("batch_a")] == ["accepted", "gold"]
        await follower.put(_judged("batch_b", "c1", "gold", 3))
        assert follower.of_line("batch_b", "c1").verdict == "gold"  # type: ignore[union-attr]
    finally:
        await follower.close()

    read = [j async for j in read_judgements(settings, "batch_b")]
    assert [(j.custom_id, j.verdict) for j in read] == [("c1", "rejected"), ("c1", "gold")]
