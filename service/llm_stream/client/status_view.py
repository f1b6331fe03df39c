"""The latest batch object of every batch, kept in memory by one consumer that follows Kafka.

The batch-status topic is compacted and keyed by batch id, so the latest record per key is the
batch's state. Each followed partition is read from its beginning once and then followed, so a
reader (``status --wait``, an HTTP ``GET /v1/batches``) asks the view instead of rescanning a
partition per question. The batches topic is followed alongside: a batch with a manifest and
no status yet is ``validating``. What the view holds lies in a ``StatusIndex`` (SQLite, off the
heap), so its memory does not grow with history.

The view follows every partition (``follow_all``) or only those a watched batch id maps to
(``watch``), as the producer's ``DefaultPartitioner`` places that key.

How current an answer is, three ways:

- ``caught_up``: every record published before the call (a ListOffsets request, shared by the
  callers waiting for one; what a one-shot reader such as ``llm-stream status`` needs);
- ``current``: every record the broker reported in fetch responses of the last moment (their
  high watermarks), with no request of its own: what a server answering many reads needs;
- ``reached``: the caller's own records, by the offsets the producer returned for them
  (read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.config import ClientConfig
from llm_stream.client.status_index import Enqueued, Record, Row, StatusIndex
from llm_stream.contracts import BatchManifest, BatchObject
from llm_stream.errors import LlmStreamError

logger = logging.getLogger(__name__)

#: How long one fetch waits for records: also how soon a newly watched partition is assigned.
_POLL_MS = 100
#: How long the broker holds a fetch of a partition with nothing new: how often an idle
#: partition's high watermark is heard again.
_FETCH_WAIT_MS = 250
#: Bytes fetched per partition at a time: what catching up on a long history holds at once.
_FETCH_PARTITION_BYTES = 64 * 1024
#: Records applied at a time: what is decoded at once while catching up on a long history.
_ROUND_RECORDS = 500
#: ``current``'s default: answers may miss what reached the broker in this last moment (a few
#: idle fetches' worth, so that an idle view is current without waiting).
CURRENT_WITHIN_S = 1.0
#: How often a topic that does not exist yet is looked for again.
_MISSING_TOPIC_RETRY_S = 1.0


class StatusViewStoppedError(LlmStreamError, RuntimeError):
    """The view's consumer failed: what it holds is no longer followed."""


class BatchStatusView:
    """Latest status record and manifest per batch id, for the partitions the view follows."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._topics = (config.batch_status_topic, config.batches_topic)
        self._consumer: AIOKafkaConsumer | None = None
        self._index: StatusIndex | None = None
        self._follower: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._follow_all = False
        self._watched: set[str] = set()
        self._wanted_version = 0
        self._assigned_version = 0
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        #: Per partition, when the broker last reported an end the view had reached (epoch s).
        self._heard_at: dict[TopicPartition, float] = {}
        #: The view holds every record the broker had, by its reports, at this time (epoch s).
        self._as_of = 0.0
        self._look_again_at: float | None = None
        self._change = asyncio.Event()
        self._round = asyncio.Event()
        #: ListOffsets requests sent by ``caught_up``, and the answer to the latest.
        self._ends_asked = 0
        self._ends: Mapping[TopicPartition, int] | None = None
        self._ends_lock = asyncio.Lock()
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
            **self._config.connection,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            max_partition_fetch_bytes=_FETCH_PARTITION_BYTES,
        )
        try:
            await consumer.start()
            index = StatusIndex()
        except BaseException:
            await consumer.stop()  # closed, so it is not reported unclosed when collected
            raise
        self._consumer = consumer
        self._index = index
        self._follower = asyncio.create_task(self._follow(consumer, self._index))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._index is not None:
            index, self._index = self._index, None  # no reader uses it while it closes
            await asyncio.to_thread(index.close)

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
        ends = await self._end_offsets(self._consumer)
        await self._until(lambda: all(self._positions[tp] >= end for tp, end in ends.items()))

    async def current(self, within_s: float = CURRENT_WITHIN_S) -> None:
        """Return once the view holds every record the broker reported in its fetch responses
        up to ``within_s`` before this call. Asks the broker nothing: at once on a view that
        follows; waits while the view applies what it fetched, or the broker does not answer."""
        version = self._wanted_version
        await self._until(lambda: self._assigned_version >= version)
        since = time.time() - within_s
        await self._until(lambda: self._as_of >= since)

    def lag_s(self) -> float:
        """How long ago the view last held every record the broker reported."""
        return max(0.0, time.time() - self._as_of)

    async def reached(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Return once the view holds the records at ``offsets`` (those the caller published,
        as its producer reported them) on the partitions it follows."""
        version = self._wanted_version
        await self._until(lambda: self._assigned_version >= version)
        await self._until(
            lambda: all(
                self._positions[tp] > offset
                for tp, offset in offsets.items()
                if tp in self._assigned
            )
        )

    async def changed(self) -> None:
        """Return after the view next applies records (or raise if it stopped following)."""
        self._raise_if_stopped()
        await self._change.wait()
        self._raise_if_stopped()

    def problem(self) -> str | None:
        """Why the view no longer follows its topics, or None."""
        try:
            self._raise_if_stopped()
        except StatusViewStoppedError as error:
            return f"{error}: {error.__cause__ or 'stopped'}"
        return None

    def latest(self, batch_id: str) -> BatchObject | None:
        """The batch's latest object; ``validating`` with a manifest but no status; None if
        neither was read. Only a watched (or followed) batch is known.

        Raises pydantic's ValidationError when the latest record is not a batch object.
        """
        if self._index is None:
            return None
        row = self._index.get(batch_id)
        return None if row is None else _batch_of(row)

    def newest(
        self, limit: int, after: str | None = None, project: str | None = None
    ) -> tuple[list[BatchObject], bool] | None:
        """Up to ``limit`` batches, newest first (``created_at``, then id), after the batch
        ``after`` when given; and whether more follow. None when ``after`` is not listed.
        ``project``: that project's batches only (``after`` one of them); None: every one.

        A record that is not a batch object is left out (and logged)."""
        if self._index is None:
            return [], False
        position = None
        if after is not None:
            listed_at = self._index.listed_at(after, project)
            if listed_at is None:
                return None
            position = (listed_at, after)
        rows = self._index.newest(limit + 1, position, project)
        batches = [batch for row in rows[:limit] if (batch := _readable(row)) is not None]
        return batches, len(rows) > limit

    def enqueued(self, project: str, model: str) -> Enqueued:
        """``project``'s unfinished batches for ``model`` read so far, and their estimated
        input tokens (what its quotas count)."""
        return Enqueued(0, 0) if self._index is None else self._index.enqueued(project, model)

    def enqueued_by_project(self) -> list[tuple[str, str, Enqueued]]:
        """``(project, model, enqueued)`` for every pair with unfinished batches."""
        return [] if self._index is None else self._index.enqueued_by_project()

    def batch_ids(self) -> list[str]:
        """Every batch id read so far, with a status or only a manifest."""
        return [] if self._index is None else self._index.batch_ids()

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise StatusViewStoppedError("the batch status view stopped") from self._failure
        if self._follower is None:
            raise StatusViewStoppedError("the batch status view is not running")

    async def _until(self, reached: Callable[[], bool]) -> None:
        """Wait, round after round of the follower, until ``reached()``."""
        while not reached():
            self._raise_if_stopped()
            await self._round.wait()
        # A condition met by a view that has stopped since still holds for what it read.

    async def _end_offsets(self, consumer: AIOKafkaConsumer) -> Mapping[TopicPartition, int]:
        """The ends of the followed partitions, from a ListOffsets request sent after this
        call began: callers arriving while one is out wait for it, then share the next."""
        ticket = self._ends_asked
        async with self._ends_lock:
            if self._ends_asked > ticket and self._ends is not None:
                return self._ends
            self._ends_asked += 1
            self._ends = None
            self._ends = await consumer.end_offsets(list(self._assigned))
            return self._ends

    @staticmethod
    def _wake(event: asyncio.Event) -> asyncio.Event:
        event.set()
        return asyncio.Event()

    async def _follow(self, consumer: AIOKafkaConsumer, index: StatusIndex) -> None:
        try:
            while True:
                if self._assignment_due():
                    await self._reassign(consumer)
                if self._assigned:
                    await self._read_once(consumer, index)
                else:
                    await asyncio.sleep(_POLL_MS / 1000)
                    self._as_of = time.time()  # nothing followed: nothing missed
                self._round = self._wake(self._round)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failure = error
            self._change = self._wake(self._change)
            self._round = self._wake(self._round)
            raise

    async def _read_once(self, consumer: AIOKafkaConsumer, index: StatusIndex) -> None:
        """Fetch, apply and move on; what was fetched is let go on return."""
        fetched = await consumer.getmany(
            *self._assigned, timeout_ms=_POLL_MS, max_records=_ROUND_RECORDS
        )
        # What the broker said with these records, before any other response lands.
        heard = {
            tp: (consumer.highwater(tp), consumer.last_poll_timestamp(tp)) for tp in self._assigned
        }
        await index.apply(self._records(fetched.values()))
        moved = bool(fetched)
        for tp in self._assigned:
            position = await consumer.position(tp)
            moved |= position != self._positions[tp]
            self._positions[tp] = position
        self._advance(heard)
        if moved:
            self._change = self._wake(self._change)

    def _advance(self, heard: Mapping[TopicPartition, tuple[int | None, int | None]]) -> None:
        """Move ``_as_of`` on: a partition whose position reached the end its latest fetch
        response reported holds everything the broker had when it answered."""
        for tp, (highwater, answered_ms) in heard.items():
            reached = highwater is not None and self._positions[tp] >= highwater
            if reached and answered_ms is not None:
                self._heard_at[tp] = answered_ms / 1000
        self._as_of = min(self._heard_at.get(tp, 0.0) for tp in self._assigned)

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
        self._round = self._wake(self._round)

    async def _wanted_partitions(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        if any(not consumer.partitions_for_topic(topic) for topic in self._topics):
            # AIOKafkaConsumer has no public refresh of the metadata partitions_for_topic reads.
            await consumer._client.force_metadata_update()
        wanted: set[TopicPartition] = set()
        missing = False
        for topic in self._topics:
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

    def _records(self, fetched: Iterable[list[Any]]) -> list[Record]:
        records = []
        for batch in fetched:
            for record in batch:
                self.records_read += 1
                if record.key is not None:
                    key = record.key.decode(errors="replace")
                    is_status = record.topic == self._config.batch_status_topic
                    records.append(Record(is_status, key, record.value))
        return records


def _batch_of(row: Row) -> BatchObject | None:
    """The batch object a row stands for; ValidationError when its record is not one."""
    if row.status is not None:
        return BatchObject.model_validate_json(row.status)
    if row.manifest is None:
        return None
    return batch_object(BatchManifest.model_validate_json(row.manifest), BatchStatus.VALIDATING)


def _readable(row: Row) -> BatchObject | None:
    try:
        return _batch_of(row)
    except pydantic.ValidationError:
        logger.warning("batch %s: its latest record is not a batch object", row.batch_id)
        return None
