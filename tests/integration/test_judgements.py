"""Judgements on a real broker: published by one process (the Label Studio pull, another
gateway), followed by a gateway's ``KafkaJudgements`` into its index on disk (the last
judgement of a line wins, a tombstone deletes it, ready once the history is read), and a
batch's read once by ``read_judgements`` for an export."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llm_stream.contracts import Judgement
from llm_stream.curation.judgement_index import Forgotten
from llm_stream.curation.judgements import KafkaJudgements, publish_judgements, read_judgements
from llm_stream.kafka.connection import client_kwargs, start_client
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings

pytestmark = pytest.mark.broker


def _judged(batch_id: str, line: str, verdict: str, at: float) -> Judgement:
    return Judgement(batch_id=batch_id, custom_id=line, verdict=verdict, judged_at=at)  # type: ignore[arg-type]


async def _tombstone(settings: Settings, key: bytes) -> None:
    connection = client_kwargs(settings)
    producer = AIOKafkaProducer(**connection)
    await start_client(producer, connection)
    try:
        await producer.send_and_wait(settings.judgements_topic, None, key=key)
    finally:
        await producer.stop()


async def test_judgements_are_followed_and_read_per_batch(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    await ensure_topics(settings, [settings.judgements_topic])
    published = [
        _judged("batch_a", "c1", "rejected", 1),
        _judged("batch_a", "c1", "accepted", 2),
        _judged("batch_a", "c2", "gold", 1),
        _judged("batch_b", "c1", "rejected", 1),
    ]
    assert await publish_judgements(settings, published) == 4

    follower = KafkaJudgements(settings, index_root=tmp_path / "index")
    assert follower.problem() is not None  # not following yet
    await follower.start()
    try:
        deadline = time.monotonic() + 20
        while follower.problem() is not None:  # ready once the history is read
            assert time.monotonic() < deadline, "the follower did not catch up"
            await asyncio.sleep(0.1)
        assert [j.verdict for j in follower.of_batch("batch_a")] == ["accepted", "gold"]
        assert list((tmp_path / "index").rglob("judgements.sqlite"))  # held on disk
        await follower.put(_judged("batch_b", "c1", "gold", 3))
        assert follower.of_lines("batch_b", ["c1"])["c1"].verdict == "gold"

        await _tombstone(settings, b"batch_a/c2")
        while "c2" in follower.of_lines("batch_a", ["c2"]):  # the tombstone deletes the line
            assert time.monotonic() < deadline, "the tombstone was not followed"
            await asyncio.sleep(0.1)
        assert [j.custom_id for j in follower.of_batch("batch_a")] == ["c1"]
    finally:
        await follower.close()

    read = [j async for j in read_judgements(settings, "batch_b")]
    assert read == [published[3], _judged("batch_b", "c1", "gold", 3)]
    with_tombstone = [j async for j in read_judgements(settings, "batch_a")]
    by_line = sorted(with_tombstone, key=lambda found: found.custom_id)  # in order per line
    assert by_line == [*published[:3], Forgotten("batch_a", "c2")]


async def test_a_gateway_is_ready_once_an_empty_judgements_topic_is_read(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    await ensure_topics(settings)
    follower = KafkaJudgements(settings, index_root=tmp_path / "index")
    await follower.start()
    try:
        deadline = time.monotonic() + 20
        while (problem := follower.problem()) is not None:
            assert time.monotonic() < deadline, f"never ready: {problem}"
            await asyncio.sleep(0.1)
        assert follower.of_batch("batch_a") == []
    finally:
        await follower.close()
    assert follower.problem() == f"not following {settings.judgements_topic}"
