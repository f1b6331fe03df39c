"""Kafka plumbing shared by the processes: broker and subscriber set-up, the pipeline's
publisher and committer, record conversion and consumer lag."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from service import metrics
from service.contracts import BatchObject, ResultMessage
from service.protocols import IncomingRecord
from service.settings import Settings

logger = logging.getLogger(__name__)


def encode_result(result: ResultMessage) -> bytes:
    """The wire form of a result: one OpenAI batch output line plus batch_id, via orjson."""
    return orjson.dumps(result.model_dump(mode="json"))


class KafkaResultPublisher:
    """Publishes results keyed by batch_id (one partition per batch) and dead letters."""

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
        self._broker = broker
        self._results_topic = settings.results_topic
        self._dead_letter_topic = settings.dead_letter_topic

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        await self._broker.publish(
            encode_result(result),
            self._results_topic,
            key=result.batch_id.encode(),
            headers={**headers, "content-type": "application/json"},
        )

    async def publish_dead_letter(
        self, value: bytes | None, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        await self._broker.publish(
            value or b"", self._dead_letter_topic, key=key, headers=dict(headers)
        )


class ConsumerCommitter:
    """Commits explicit offsets on the aiokafka consumer behind a FastStream subscriber.

    FastStream's own ``ack()`` commits everything consumed so far, which would commit requests
    still in flight; explicit maps commit only what the pipeline says is done.
    """

    def __init__(self, consumer_owner: Any) -> None:
        self._owner = consumer_owner  # anything with a ``consumer`` attribute, set once started

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        consumer = self._owner.consumer
        if consumer is None:
            return
        await consumer.commit(
            {
                TopicPartition(topic, partition): OffsetAndMetadata(offset, "")
                for (topic, partition), offset in offsets.items()
            }
        )


class KafkaStatusPublisher:
    """Publishes OpenAI batch objects to the batch-status topic, keyed by batch id."""

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
        self._broker = broker
        self._topic = settings.batch_status_topic

    async def publish_status(self, batch: BatchObject) -> None:
        await self._broker.publish(
            orjson.dumps(batch.model_dump(mode="json")),
            self._topic,
            key=batch.id.encode(),
            headers={"content-type": "application/json"},
        )


def record_headers(record: Any) -> dict[str, str]:
    """Kafka record headers as text (undecodable bytes replaced)."""
    return {
        name: value.decode(errors="replace")
        for name, value in (record.headers or ())
        if isinstance(value, bytes)
    }


def incoming(record: Any) -> IncomingRecord:
    """The Protocol-level view of an aiokafka ConsumerRecord."""
    return IncomingRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=record.value,
        key=record.key,
        headers=record_headers(record),
        timestamp_ms=record.timestamp,
    )


def forget_consumer_lag(group: str, partitions: Any) -> None:
    """Drop the lag series of partitions this process no longer owns (no stale values)."""
    for partition in partitions:
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(group, partition.topic, str(partition.partition))


async def report_consumer_lag(consumer: Any, group: str) -> None:
    """Set the lag gauge of every assigned partition: end of the log minus our position."""
    if consumer is None:
        return
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None:
            continue
        position = await consumer.position(partition)
        metrics.CONSUMER_LAG.labels(group, partition.topic, str(partition.partition)).set(
            max(0, highwater - position)
        )


def build_broker(settings: Settings) -> KafkaBroker:
    """The FastStream broker of a long-running process, with Prometheus middleware."""
    return KafkaBroker(
        settings.bootstrap_servers,
        security=settings.faststream_security(),
        enable_idempotence=settings.enable_idempotence,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY)],
    )


class ReleaseOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets a process settle its partitions before a rebalance hands them to another member."""

    def __init__(
        self, group: str, release: Callable[[list[tuple[str, int]]], Awaitable[None]]
    ) -> None:
        self._group = group
        self._release = release

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._release([(tp.topic, tp.partition) for tp in revoked])
        forget_consumer_lag(self._group, revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("assigned partitions %s", sorted((tp.topic, tp.partition) for tp in assigned))


def manual_commit_batch_subscriber(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    *,
    group_id: str,
    max_records: int,
    batch_timeout_ms: int,
    release: Callable[[list[tuple[str, int]]], Awaitable[None]],
    title: str,
) -> Any:
    """A FastStream batch subscriber whose offsets only the caller commits (AckPolicy.MANUAL):
    FastStream's own ack would commit everything fetched, finished or not."""
    return broker.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        listener=ReleaseOnRevoke(group_id, release),
        title=title,
    )
