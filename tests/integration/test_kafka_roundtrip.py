"""The harness's broker is a real Kafka-protocol broker: keyed produce, groups, commits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

pytestmark = pytest.mark.broker


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def test_keyed_messages_land_in_one_partition_per_key(
    kafka_bootstrap: str, unique_name: str
) -> None:
    await _create_topic(kafka_bootstrap, unique_name, partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(unique_name, f"{key}-{i}".encode(), key=key.encode())
            for key in ("batch_a", "batch_b", "batch_c")
            for i in range(5)
        ]
    finally:
        await producer.stop()
    partitions_by_key: dict[str, set[int]] = {}
    for index, metadata in enumerate(sent):
        partitions_by_key.setdefault("abc"[index // 5], set()).add(metadata.partition)
    assert all(len(partitions) == 1 for partitions in partitions_by_key.values())

    consumer = AIOKafkaConsumer(
        unique_name, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        while len(received) < 15:
            batches = await consumer.getmany(timeout_ms=1000)
            received += [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    assert sorted(received) == sorted(f"batch_{k}-{i}".encode() for k in "abc" for i in range(5))


async def test_committed_offsets_survive_a_consumer_restart(
    kafka_bootstrap: str, unique_name: str
) -> None:
    await _create_topic(kafka_bootstrap, unique_name, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for i in range(10):
        await producer.send_and_wait(unique_name, str(i).encode())
    await producer.stop()

    async def consume(limit: int, commit_at: int | None) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            unique_name,
            bootstrap_servers=kafka_bootstrap,
            group_id=unique_name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            values: list[bytes] = []
            while len(values) < limit:
                batches = await consumer.getmany(timeout_ms=1000, max_records=limit - len(values))
                values += [record.value for records in batches.values() for record in records]
            if commit_at is not None:
                await consumer.commit({TopicPartition(unique_name, 0): commit_at})
            return values
        finally:
            await consumer.stop()

    first = await consume(6, commit_at=4)
    assert first == [str(i).encode() for i in range(6)]
    second = await consume(6, commit_at=None)
    assert second == [str(i).encode() for i in range(4, 10)]


async def test_faststream_subscriber_receives_what_a_publisher_sends(
    kafka_bootstrap: str, unique_name: str
) -> None:
    await _create_topic(kafka_bootstrap, unique_name, partitions=2)
    broker = KafkaBroker(kafka_bootstrap)
    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    @broker.subscriber(unique_name, group_id=unique_name, auto_offset_reset="earliest")
    async def handle(body: dict[str, str]) -> None:
        await received.put(body)

    async with broker:
        await broker.start()
        for i in range(3):
            await broker.publish({"custom_id": f"c{i}"}, unique_name, key=b"batch_x")
        got = [await asyncio.wait_for(received.get(), 20) for _ in range(3)]
    assert sorted(item["custom_id"] for item in got) == ["c0", "c1", "c2"]
