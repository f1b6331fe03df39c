"""Gateway replicas tell each other their request counts, on a compacted topic.

Every ``rate_counts_sync_s`` a replica publishes each count that changed (``RateCount``, keyed
by replica and counter, so compaction keeps the latest); every replica follows the topic from
its beginning (a few minutes are kept) and hands the others' counts to its ``SharedCounts``.
A burst that reaches several replicas at once may pass a limit by what they admit within one
sync interval; a replica that cannot publish still limits on what it counts itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

import pydantic
from aiokafka import AIOKafkaProducer

from llm_stream.contracts import RateCount
from llm_stream.gateway.rate_counts import SharedCounts
from llm_stream.kafka.connection import client_kwargs, start_client
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)


class RateSync:
    """Publishes this replica's changed counts and follows the others'; ``start``/``close``."""

    def __init__(self, settings: Settings, counts: SharedCounts) -> None:
        self.replica = uuid.uuid4().hex
        self._settings = settings
        self._counts = counts
        self._follower = TopicFollower(settings, settings.rate_counts_topic, self._heard)
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Counts this replica published, and other replicas' counts taken.
        self.published = 0
        self.heard = 0

    async def start(self) -> None:
        connection = client_kwargs(self._settings)
        producer = AIOKafkaProducer(**connection, linger_ms=5)
        await start_client(producer, connection)
        self._producer = producer
        self._tasks = [
            asyncio.create_task(self._follower.run()),
            asyncio.create_task(self._publish_every_interval()),
        ]

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await self.publish_changed()  # what the last interval counted
            await producer.stop()

    def problem(self) -> str | None:
        """Why the others' counts are not followed now (limits then hold per replica)."""
        return self._follower.problem()

    async def publish_changed(self) -> None:
        """Publish every count changed since the last call; the broker confirms each."""
        producer = self._producer
        if producer is None:
            return
        sent = []
        for counter, count, expires_at in self._counts.take_changed():
            value = RateCount(
                replica=self.replica, counter=counter, count=count, expires_at=expires_at
            )
            key = f"{self.replica}/{counter}".encode()
            sent.append(
                await producer.send(
                    self._settings.rate_counts_topic, value.model_dump_json().encode(), key=key
                )
            )
        for delivery in sent:
            await delivery
        self.published += len(sent)

    async def _publish_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._settings.rate_counts_sync_s)
            try:
                await self.publish_changed()
            except Exception as error:  # the broker is away: limits hold per replica meanwhile
                logger.warning("publishing request counts failed: %r", error)

    async def _heard(self, records: Sequence[IncomingRecord]) -> None:
        for record in records:
            if record.value is None:
                continue
            try:
                found = RateCount.model_validate_json(record.value)
            except pydantic.ValidationError:
                logger.warning(
                    "record at %s[%d]@%d is no request count; skipped",
                    record.topic,
                    record.partition,
                    record.offset,
                    record.topic,
                )
                continue
            if found.replica != self.replica:
                self._counts.heard(found.replica, found.counter, found.count, found.expires_at)
                self.heard += 1
