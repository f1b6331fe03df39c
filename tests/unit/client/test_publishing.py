"""How a batch goes onto Kafka, without a broker: the keys and values of its lines, manifest and
status records, the window of unconfirmed sends, and the producer's delivery guarantees."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client import publishing
from llm_stream.client.publishing import (
    LineSender,
    OnPublished,
    new_producer,
    send_manifest,
    send_status,
)
from llm_stream.contracts import BatchManifest
from tests.unit.client.fakes import CONFIG, FakeProducer, Sent, line

MANIFEST = BatchManifest(
    batch_id="b1", endpoint="/v1/completions", request_count=2, created_at=1_700_000_000
)


def _kafka(producer: FakeProducer) -> AIOKafkaProducer:
    """The fake where the code under test takes aiokafka's producer."""
    return cast(AIOKafkaProducer, producer)


def _sender(producer: FakeProducer, on_published: OnPublished | None = None) -> LineSender:
    return LineSender(_kafka(producer), CONFIG, "b1", on_published)


class HeldProducer(FakeProducer):
    """Records what is sent; a send is confirmed (or failed) only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> asyncio.Future[None]:
        await super().send(topic, value, key, headers)
        confirmation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(confirmation)
        return confirmation

    def confirm_all(self) -> None:
        for confirmation in self.pending:
            if not confirmation.done():
                confirmation.set_result(None)


async def test_a_line_is_sent_with_its_batch_id_keyed_by_batch_and_custom_id() -> None:
    """The key spreads a batch over every requests partition; the value names its batch."""
    producer = FakeProducer()
    sender = _sender(producer)
    await sender.send({**line("a"), "body": {"prompt": "hi"}})
    [sent] = producer.sent
    assert (sent.topic, sent.key) == ("req", "b1/a")
    assert sent.value == {**line("a"), "body": {"prompt": "hi"}, "batch_id": "b1"}
    assert all(isinstance(name, str) and isinstance(value, bytes) for name, value in sent.headers)


async def test_at_most_a_window_of_sends_is_unconfirmed_before_the_sender_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throughput without buffering a whole batch: the window's last send waits for it."""
    monkeypatch.setattr(publishing, "WINDOW", 2)
    producer = HeldProducer()
    published: list[int] = []
    sender = _sender(producer, published.append)
    await sender.send(line("a"))  # returns unconfirmed
    filling = asyncio.create_task(sender.send(line("b")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not filling.done()
    assert [s.key for s in producer.sent] == ["b1/a", "b1/b"]
    assert published == []
    producer.confirm_all()
    await asyncio.wait_for(filling, 5)
    assert (sender.confirmed, published) == (2, [2])
    await sender.send(line("c"))  # a new window: no wait
    producer.confirm_all()
    assert await sender.flush() == 3
    assert published == [2, 1]


async def test_flush_returns_the_confirmed_total_and_reports_no_empty_window() -> None:
    """A progress bar is told only of lines the broker holds, never of zero lines."""
    producer = FakeProducer()
    published: list[int] = []
    sender = _sender(producer, published.append)
    assert await sender.flush() == 0
    await sender.send(line("a"))
    await sender.send(line("b"))
    assert await sender.flush() == 2
    assert await sender.flush() == 2
    assert published == [2]


async def test_flush_raises_a_failed_send() -> None:
    """A line the broker refused is never counted as submitted."""
    producer = HeldProducer()
    sender = _sender(producer)
    await sender.send(line("a"))
    producer.pending[0].set_exception(ConnectionError("broker gone"))
    with pytest.raises(ConnectionError, match="broker gone"):
        await sender.flush()
    assert sender.confirmed == 0


async def test_abandon_settles_failed_sends_without_raising_or_counting_them() -> None:
    """A block that failed is given up: its sends' outcomes no longer matter."""
    producer = HeldProducer()
    published: list[int] = []
    sender = _sender(producer, published.append)
    await sender.send(line("a"))
    await sender.send(line("b"))
    producer.pending[0].set_exception(ConnectionError("broker gone"))
    producer.pending[1].set_result(None)
    await sender.abandon()
    assert await sender.flush() == 0  # nothing left in the window
    assert published == []


async def test_the_manifest_is_keyed_by_batch_id_and_leaves_an_unset_model_out() -> None:
    """Aggregators older than ``model`` refuse unknown fields: an unset one is not sent."""
    producer = FakeProducer()
    placed = await send_manifest(_kafka(producer), CONFIG, MANIFEST)
    named = await send_manifest(
        _kafka(producer), CONFIG, MANIFEST.model_copy(update={"model": "m"})
    )
    bare, with_model = producer.sent
    assert (bare.topic, bare.key) == ("batches", "b1")
    assert "model" not in bare.value
    assert bare.value["request_count"] == 2
    assert with_model.value["model"] == "m"
    assert (placed.topic, placed.offset, named.offset) == ("batches", 0, 1)


async def test_a_status_is_keyed_by_batch_id_and_says_it_is_json() -> None:
    """Readers of the status topic (the aggregator's format) decode it by its content type."""
    producer = FakeProducer()
    batch = batch_object(
        MANIFEST, BatchStatus.CANCELLING, reached_at={BatchStatus.CANCELLING: 1_700_000_001}
    )
    await send_status(_kafka(producer), CONFIG, batch)
    assert producer.sent == [
        Sent("status", "b1", batch.model_dump(mode="json"), [("content-type", b"application/json")])
    ]


@pytest.mark.parametrize("idempotent", [False, True])
def test_the_producer_waits_for_every_replica_and_is_idempotent_as_configured(
    monkeypatch: pytest.MonkeyPatch, idempotent: bool
) -> None:
    """A line counts as submitted only once every in-sync replica holds it."""
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(publishing, "AIOKafkaProducer", lambda **kwargs: made.append(kwargs))
    new_producer(dataclasses.replace(CONFIG, enable_idempotence=idempotent))
    [kwargs] = made
    assert kwargs["bootstrap_servers"] == "127.0.0.1:1"
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is idempotent


async def test_a_line_of_a_project_names_it_in_a_header_and_the_manifest_too() -> None:
    """Kafka-side consumers read the project without parsing the value; none: no header."""
    producer = FakeProducer()
    await LineSender(_kafka(producer), CONFIG, "b1", project="search").send(line("a"))
    await _sender(producer).send(line("b"))
    named, unnamed = producer.sent
    assert ("llm-stream-project", b"search") in named.headers
    assert all(name != "llm-stream-project" for name, _ in unnamed.headers)
    manifest = BatchManifest(batch_id="b1", endpoint="/v1/completions", request_count=1)
    await send_manifest(_kafka(producer), CONFIG, manifest.model_copy(update={"project": "ads"}))
    await send_manifest(_kafka(producer), CONFIG, manifest)
    assert producer.sent[-2].value["project"] == "ads"
    assert "project" not in producer.sent[-1].value  # older aggregators refuse unknown fields
