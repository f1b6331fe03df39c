"""``async with client.batch(...) as batch``: lines are published as they are added, the manifest
last and only after a clean block; invalid, duplicate and missing lines publish nothing."""

from __future__ import annotations

import pytest

from llm_stream.client.batch_client import BatchClient
from llm_stream.client.writer import EmptyBatchError, InvalidLineError
from tests.unit.client.fakes import CONFIG, FakeProducer
from tests.unit.client.fakes import line as _line


async def test_the_async_producer_publishes_lines_then_the_manifest_with_their_count(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client:
        async with client.batch(endpoint="/v1/completions", batch_id="w1") as batch:
            for custom_id in ("a", "b", "c"):
                await batch.add(_line(custom_id))
            assert all(s.topic == "req" for s in producer.sent)
        handle = batch.handle
    assert handle.batch_id == "w1"
    *lines, manifest = producer.sent
    assert [s.key for s in lines] == ["w1/a", "w1/b", "w1/c"]
    assert (manifest.topic, manifest.key) == ("batches", "w1")
    assert manifest.value["request_count"] == 3


async def test_a_failed_block_publishes_no_manifest_and_gives_no_handle(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client:
        batch = client.batch(endpoint="/v1/completions", batch_id="w1")

        async def fill_then_fail() -> None:
            async with batch:
                await batch.add(_line("a"))
                raise KeyError("upstream failed")

        with pytest.raises(KeyError):
            await fill_then_fail()
    assert [s.topic for s in producer.sent] == ["req"]
    with pytest.raises(RuntimeError, match="not submitted"):
        _ = batch.handle


async def test_invalid_and_duplicate_lines_are_refused_without_publishing(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client, client.batch(endpoint="/v1/x", batch_id="w") as batch:
        await batch.add(_line("a"))
        with pytest.raises(InvalidLineError, match="duplicate custom_id 'a'"):
            await batch.add(_line("a"))
        with pytest.raises(InvalidLineError, match="over the 2048-byte limit"):
            await batch.add({**_line("big"), "body": {"prompt": "x" * 3000}})
        with pytest.raises(InvalidLineError, match="custom_id must be a string"):
            await batch.add({"url": "/v1/completions", "body": {}})
    assert [s.key for s in producer.sent] == ["w/a", "w"]
    assert producer.sent[-1].value["request_count"] == 1


async def test_an_empty_batch_publishes_no_manifest(producer: FakeProducer) -> None:
    async with BatchClient(CONFIG) as client:
        with pytest.raises(ValueError, match="has no lines"):
            async with client.batch(endpoint="/v1/completions", batch_id="w1"):
                pass
    assert producer.sent == []


async def test_an_empty_block_raises_empty_batch_error_naming_the_batch(
    producer: FakeProducer,
) -> None:
    """Callers catch the writer's own error, not any ValueError."""
    async with BatchClient(CONFIG) as client:
        with pytest.raises(EmptyBatchError, match="batch w1 has no lines"):
            async with client.batch(endpoint="/v1/completions", batch_id="w1"):
                pass


async def test_lines_added_before_or_after_the_block_are_refused_unpublished(
    producer: FakeProducer,
) -> None:
    """A line outside the block would be missing from the manifest's count."""
    async with BatchClient(CONFIG) as client:
        batch = client.batch(endpoint="/v1/completions", batch_id="w1")
        with pytest.raises(RuntimeError, match="inside the batch's async with block"):
            await batch.add(_line("early"))
        async with batch:
            await batch.add(_line("a"))
        with pytest.raises(RuntimeError, match="inside the batch's async with block"):
            await batch.add(_line("late"))
    assert [s.key for s in producer.sent] == ["w1/a", "w1"]
    assert producer.sent[-1].value["request_count"] == 1


async def test_a_refused_line_carries_each_broken_rule(producer: FakeProducer) -> None:
    """A caller can report every problem of a line, not only the joined message."""
    async with BatchClient(CONFIG) as client, client.batch(endpoint="/v1/x", batch_id="w") as batch:
        await batch.add(_line("a"))
        with pytest.raises(InvalidLineError) as refused:
            await batch.add(_line("a"))
    assert [problem.message for problem in refused.value.problems] == [str(refused.value)]
    assert "duplicate custom_id 'a'" in str(refused.value)


async def test_the_manifest_keeps_the_blocks_endpoint_window_and_metadata(
    producer: FakeProducer,
) -> None:
    """Only the count and the model are filled in at the end: the rest is what was asked."""
    async with BatchClient(CONFIG) as client:
        batch = client.batch(
            endpoint="/v1/completions",
            batch_id="w1",
            metadata={"team": "search"},
            completion_window="1h",
        )
        assert batch.batch_id == "w1"
        async with batch:
            await batch.add(_line("a"))
    manifest = producer.sent[-1]
    assert (manifest.topic, manifest.key) == ("batches", "w1")
    assert manifest.value["endpoint"] == "/v1/completions"
    assert manifest.value["completion_window"] == "1h"
    assert manifest.value["metadata"] == {"team": "search"}
    assert batch.handle.batch_id == "w1"
