"""Kafka implementations of the pipeline's publisher and committer Protocols."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faststream.kafka import KafkaBroker

from service.contracts import ResultMessage
from service.settings import Settings


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

    def __init__(self, subscriber: Any) -> None:
        self._subscriber = subscriber

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        consumer = self._subscriber.consumer
        if consumer is None:
            return
        await consumer.commit(
            {
                TopicPartition(topic, partition): OffsetAndMetadata(offset, "")
                for (topic, partition), offset in offsets.items()
            }
        )
