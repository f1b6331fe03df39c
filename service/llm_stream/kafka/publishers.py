"""Kafka plumbing shared by the processes: the broker that publishes, the result and status
publishers (acks=all, compressed, within the message size limit) and consumer lag."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import cramjam
import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from llm_stream.contracts import BatchObject, ResultMessage
from llm_stream.kafka.connection import kafka_connection
from llm_stream.ops import metrics
from llm_stream.protocols import MessageTooLargeError
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Per-record bytes besides key, value and headers (lengths, attributes, batch header).
_RECORD_OVERHEAD = 512
_COMPRESSORS: dict[str, Callable[[bytes], Any]] = {
    "gzip": cramjam.gzip.compress,
    "snappy": cramjam.snappy.compress_raw,
    "lz4": cramjam.lz4.compress,
    "zstd": cramjam.zstd.compress,
}


def encode_result(result: ResultMessage) -> bytes:
    """The wire form of a result: one OpenAI batch output line plus batch_id, via orjson."""
    return orjson.dumps(result.model_dump(mode="json"))


class MessageSizeCheck:
    """Decides before publishing whether a record fits the broker's limit once compressed.

    The producer checks the uncompressed size and the broker the compressed one; we raise the
    producer's limit and check the compressed size ourselves, so a large but compressible
    answer is published and only a truly oversized one is refused, by us, not by the broker.
    """

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_message_bytes
        self._compress = _COMPRESSORS.get(settings.compression_type)

    def size(self, value: bytes, key: bytes | None, headers: Mapping[str, str]) -> int:
        extra = _RECORD_OVERHEAD + len(key or b"")
        extra += sum(len(name) + len(text.encode()) for name, text in headers.items())
        if len(value) + extra <= self.limit or self._compress is None:
            return len(value) + extra
        return len(self._compress(value)) + extra

    def check(self, value: bytes, key: bytes | None, headers: Mapping[str, str]) -> None:
        size = self.size(value, key, headers)
        if size > self.limit:
            raise MessageTooLargeError(size, self.limit)


class KafkaResultPublisher:
    """Publishes results keyed by batch_id (one partition per batch) and dead letters."""

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
        self._broker = broker
        self._results_topic = settings.results_topic
        self._dead_letter_topic = settings.dead_letter_topic
        self._sizes = MessageSizeCheck(settings)

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        value, key = encode_result(result), result.batch_id.encode()
        headers = {**headers, "content-type": "application/json"}
        self._sizes.check(value, key, headers)
        try:
            await self._broker.publish(value, self._results_topic, key=key, headers=headers)
        except (MessageSizeTooLargeError, RecordListTooLargeError) as error:
            # The topic's own limit is lower than ours: still an answer, not a crash.
            raise MessageTooLargeError(len(value), self._sizes.limit) from error

    async def publish_dead_letter(
        self, value: bytes | None, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        await self._broker.publish(
            value or b"", self._dead_letter_topic, key=key, headers=dict(headers)
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


#: Bytes the producer gathers per partition before it must wait. All of a batch's results go to
#: one partition, and aiokafka sends one batch per partition at a time: with its 16 KiB default,
#: hundreds of concurrent publishers wake on every send to find the next batch full again, and
#: that wake-up storm cost more CPU than the rest of a request's path.
_BATCH_BYTES = 1024 * 1024


def build_broker(settings: Settings) -> KafkaBroker:
    """The FastStream broker that publishes for a long-running process: acks from every
    in-sync replica (a result must survive a leader failover once its request is committed),
    the configured codec, and a producer limit above ours (see ``MessageSizeCheck``)."""
    compression = None if settings.compression_type == "none" else settings.compression_type
    return KafkaBroker(
        **kafka_connection(settings).faststream_kwargs(),
        enable_idempotence=settings.enable_idempotence,
        acks="all",
        compression_type=compression,
        max_request_size=max(64 * 1024 * 1024, 16 * settings.max_message_bytes),
        max_batch_size=_BATCH_BYTES,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY)],
    )
