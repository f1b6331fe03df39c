"""The latest batch object of every batch, kept in memory by one consumer that follows Kafka.

The batch-status topic is compacted and keyed by batch id, so the latest record per key is the
batch's state. Each followed partition is read from its beginning once and then followed, so a
reader (``status --wait``, an HTTP ``GET /v1/batches``) asks memory instead of rescanning a
partition per question. The batches topic is followed alongside: a batch with a manifest and
no status yet is ``validating``.

The view follows every partition (``follow_all``) or only those a watched batch id maps to
(``watch``), as the producer's ``DefaultPartitioner`` places that key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.config import ClientConfig
from llm_stream.contracts import BatchManifest, BatchObject

#: How long one fetch waits for records: also how soon a newly watched partition is assigned.
_POLL_MS = 100
#: How often a topic that does not exist yet is looked for again.
_MISSING_TOPIC_RETRY_S = 1.0


class StatusViewStoppedError(RuntimeError):
    """The view's consumer failed: what it holds is no longer followed."""


class BatchStatusView:
    """Latest status record and manifest per batch id, for the partitions the view follows."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        #: Latest record value per batch id, by topic: decoded when asked for.
        self._values: dict[str, dict[str, bytes]] = {
            config.batch_status_topic: {},
            config.batches_topic: {},
        }
        self._follow_all = False
        self._watched: set[str] = set()
        self._wanted_version = 0
        self._assigned_version = 0
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._look_again_at: float | None = None
        self._change = asyncio.Event()
        #: Records applied since the view started (each record is fetched once).
        self.records_read = 0

    async def __aenter__(self) -> BatchStatusView:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._config.connection, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # closed, so it is not reported unclosed when collected
            raise
        self._consumer = consumer
        self._follower = asyncio.create_task(self._follow(consumer))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def watch(self, batch_id: str) -> None:
        """Follow the partitions ``batch_id`` maps to (from their beginning, then onwards)."""
        if not self._follow_all and batch_id not in self._watched:
            self._watched.add(batch_id)
            self._wanted_version += 1

    def follow_all(self) -> None:
        """Follow every partition of both topics, for a view of every batch."""
        if not self._follow_all:
            self._follow_all = True
            self._wanted_version += 1

    async def caught_up(self) -> None:
        """Return once the view holds every record published before this call to the
        partitions it follows (a topic that does not exist yet holds none)."""
        version = self._wanted_version
        await self._until(lambda: self._assigned_version >= version)
        if self._consumer is None or not self._assigned:
            return
        ends: Mapping[TopicPartition, int] = await self._consumer.end_offsets(list(self._assigned))
        await self._until(lambda: all(self._positions[tp] >= end for tp, end in ends.items()))

    async def changed(self) -> None:
        """Return after the view next applies records (or raise if it stopped following)."""
        self._raise_if_stopped()
        await self._change.wait()
        self._raise_if_stopped()

    def latest(self, batch_id: str) -> BatchObject | None:
        """The batch's latest object; ``validating`` with a manifest but no status; None if
        neither was read. Only a watched (or followed) batch is known.

        Raises pydantic's ValidationError when the latest record is not a batch object.
        """
        status = self._values[self._config.batch_status_topic].get(batch_id)
        if status is not None:
            return BatchObject.model_validate_json(status)
        manifest = self._values[self._config.batches_topic].get(batch_id)
        if manifest is None:
            return None
        return batch_object(BatchManifest.model_validate_json(manifest), BatchStatus.VALIDATING)

    def batch_ids(self) -> list[str]:
        """Every batch id read so far, with a status or only a manifest."""
        return sorted({key for values in self._values.values() for key in values})

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise StatusViewStoppedError("the batch status view stopped") from self._failure
        if self._follower is None:
            raise StatusViewStoppedError("the batch status view is not running")

    async def _until(self, reached: Callable[[], bool]) -> None:
        while not reached():
            await self.changed()

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                if self._assignment_due():
                    await self._reassign(consumer)
                    self._notify()
                if not self._assigned:
                    await asyncio.sleep(_POLL_MS / 1000)
                    continue
                fetched = await consumer.getmany(*self._assigned, timeout_ms=_POLL_MS)
                moved = self._apply(fetched.values())
                for tp in self._assigned:
                    position = await consumer.position(tp)
                    moved |= position != self._positions[tp]
                    self._positions[tp] = position
                if moved:
                    self._notify()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failure = error
            self._notify()
            raise

    def _assignment_due(self) -> bool:
        if self._assigned_version != self._wanted_version:
            return True
        return self._look_again_at is not None and time.monotonic() >= self._look_again_at

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        """Add the partitions now wanted; those already followed keep their positions."""
        version = self._wanted_version
        wanted = self._assigned | await self._wanted_partitions(consumer)
        added = wanted - self._assigned
        if added:
            consumer.assign(list(wanted))
            for tp in self._assigned:
                consumer.seek(tp, self._positions[tp])
            await consumer.seek_to_beginning(*added)
            for tp in added:
                self._positions[tp] = await consumer.position(tp)
            self._assigned = wanted
        self._assigned_version = version

    async def _wanted_partitions(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        topics = list(self._values)
        if any(not consumer.partitions_for_topic(topic) for topic in topics):
            # AIOKafkaConsumer has no public refresh of the metadata partitions_for_topic reads.
            await consumer._client.force_metadata_update()
        wanted: set[TopicPartition] = set()
        missing = False
        for topic in topics:
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            missing |= not partitions
            wanted |= {TopicPartition(topic, p) for p in self._followed(partitions)}
        self._look_again_at = time.monotonic() + _MISSING_TOPIC_RETRY_S if missing else None
        return wanted

    def _followed(self, partitions: list[int]) -> set[int]:
        if not partitions or self._follow_all:
            return set(partitions)
        place = DefaultPartitioner()
        return {place(key.encode(), partitions, partitions) for key in self._watched}

    def _apply(self, fetched: Iterable[list[Any]]) -> bool:
        applied = False
        for records in fetched:
            for record in records:
                applied = True
                self.records_read += 1
                if record.key is None:
                    continue
                values = self._values[record.topic]
                key = record.key.decode(errors="replace")
                if record.value is None:  # a tombstone: the batch is forgotten
                    values.pop(key, None)
                else:
                    values[key] = record.value
        return applied
