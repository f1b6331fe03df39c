"""The one consume loop of the worker and the aggregator, on aiokafka, with no record dropped.

We own the fetch loop instead of a framework's subscriber because the guarantees live here:
- records are decoded by us (``kafka.records.decode_record``), so no header, codec or body can
  raise in a parser and take a whole fetched batch with it;
- the loop remembers, per partition, the next offset it has not handed to the handler, starting
  from the group's committed offset; after any fetch error it seeks every partition back there,
  so records aiokafka drained from other partitions before the error are fetched again;
- the handler says how many records it can take (``capacity``); when it is full the partitions
  are paused and the loop keeps polling, so the group never sees a member that stopped polling;
- commits go only to partitions this member owns, only forward, only what the handler says is
  finished;
- readiness reports a failing fetch and partitions whose pending records stopped advancing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from llm_stream.kafka.connection import bounded_consumer_kwargs
from llm_stream.kafka.publishers import forget_consumer_lag, report_consumer_lag
from llm_stream.kafka.records import decode_record, install_lenient_record_parsing
from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord, RecordHandler, TopicPartitionKey
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

_BUSY_POLL_MS = 100  # while the handler is full: poll often, so freed capacity is used soon
_MAX_BACKOFF_S = 5.0


def _key(partition: TopicPartition) -> TopicPartitionKey:
    return (partition.topic, partition.partition)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._loop._on_assigned(assigned)


class ConsumeLoop:
    """One consumer-group member of ``topic`` (or of several topics) feeding a
    ``RecordHandler``."""

    def __init__(
        self,
        settings: Settings,
        topic: str | Sequence[str],
        group_id: str,
        handler: RecordHandler,
        *,
        max_records: int,
        poll_timeout_ms: int = 500,
        consumer: Any = None,
    ) -> None:
        """``consumer`` replaces the aiokafka consumer (tests pass a fake)."""
        install_lenient_record_parsing()
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        #: The topics, as logs and readiness name them.
        self.topic = ", ".join(self.topics)
        self.group_id = group_id
        self._settings = settings
        self._handler = handler
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._next: dict[TopicPartitionKey, int] = {}
        self._committed: dict[TopicPartitionKey, int] = {}
        self._advanced_at: dict[TopicPartitionKey, float] = {}
        self._paused = False
        self._failure: str | None = None
        self._failures_in_a_row = 0
        self._last_commit = 0.0
        self._stopping = asyncio.Event()
        #: A re-read asked for (``reread``), and from when (ms) if not from the commits.
        self._reread_requested = False
        self._reread_since: int | None = None
        self.consumer: Any = consumer or AIOKafkaConsumer(
            **bounded_consumer_kwargs(settings),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            max_poll_records=max_records,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def stop(self) -> None:
        await self.consumer.stop()

    def stop_fetching(self) -> None:
        """Make ``run`` return after its current poll (the handler keeps what it has)."""
        self._stopping.set()

    def reread(self, since_ms: int | None = None) -> None:
        """Have the handler forget its partitions and read them again, at the loop's next turn
        (never between a fetch and its handling), from their committed offsets or, where the
        first record stamped ``since_ms`` or later lies before, from there. For records a
        broker wrote where this reader does not look: one back from a stale log end hands
        out again offsets this reader had passed, even below its commits."""
        self._reread_requested = True
        if since_ms is not None:
            earliest = self._reread_since
            self._reread_since = since_ms if earliest is None else min(earliest, since_ms)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch and hand over records until ``stop_fetching``; commit as work finishes."""
        while not self._stopping.is_set():
            if self._reread_requested:
                since, self._reread_since, self._reread_requested = self._reread_since, None, False
                await self._rewind_to_committed(since)
            capacity = self._handler.capacity()
            self._pause(capacity == 0)
            try:
                fetched = await self.consumer.getmany(
                    timeout_ms=_BUSY_POLL_MS if capacity == 0 else self._poll_timeout_ms,
                    max_records=max(1, min(capacity, self._max_records)),
                )
            except Exception as error:  # a record batch we cannot read, a broker error, ...
                await self._fetch_failed(error)
                continue
            self._fetch_succeeded()
            records = self._owned_records(fetched)
            if records:
                try:
                    await self._handler.handle(records)
                except Exception:
                    logger.exception("handling %d records failed; re-reading them", len(records))
                    await self._rewind_to_committed()
                    continue
            await self.commit_due()

    def _owned_records(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> list[Any]:
        owned = self.consumer.assignment()
        records: list[IncomingRecord] = []
        for partition, batch in fetched.items():
            if partition not in owned or _key(partition) not in self._next or not batch:
                # Revoked while the fetch was in flight: its new owner reads it. Assigned but
                # not set up yet (aiokafka runs the listener beside getmany): the set-up seeks
                # it back to its start.
                continue
            records.extend(decode_record(record) for record in batch)
            self._advance(_key(partition), next_offset=batch[-1].offset + 1)
        return records

    def _pause(self, full: bool) -> None:
        if full == self._paused:
            return
        assignment = list(self.consumer.assignment())
        if full:
            self.consumer.pause(*assignment)
        else:
            self.consumer.resume(*assignment)
        self._paused = full

    async def _fetch_failed(self, error: Exception) -> None:
        self._failures_in_a_row += 1
        reason = f"{type(error).__name__}: {error}"[:500]
        metrics.FETCH_ERRORS.labels(self.group_id, type(error).__name__).inc()
        if self._failure != reason:
            logger.error("fetching %s failed: %s", self.topic, reason)
        self._failure = reason
        self._rewind()
        await asyncio.sleep(min(_MAX_BACKOFF_S, 0.1 * 2 ** min(self._failures_in_a_row, 6)))

    def _fetch_succeeded(self) -> None:
        if self._failure is not None:
            logger.info("fetching %s recovered", self.topic)
        self._failure = None
        self._failures_in_a_row = 0

    def _rewind(self) -> None:
        """Seek every owned partition back to the first record not yet handed over."""
        for partition in self.consumer.assignment():
            offset = self._next.get(_key(partition))
            if offset is not None:
                self.consumer.seek(partition, offset)

    async def _rewind_to_committed(self, since_ms: int | None = None) -> None:
        """After a handler error, or asked to (``reread``): the handler forgets the partitions
        and re-reads them from their commits (or the first record stamped ``since_ms``, where
        that lies before; commits still only go forward)."""
        # Partitions assigned but not set up yet are left to their set-up, which seeks them.
        owned = [p for p in self.consumer.assignment() if _key(p) in self._committed]
        starts = {_key(p): self._committed[_key(p)] for p in owned}
        if since_ms is not None and owned:
            try:
                found = await self.consumer.offsets_for_times(dict.fromkeys(owned, since_ms))
            except Exception as error:  # the commits, then
                logger.warning("looking up offsets by time failed: %r", error)
                found = {}
            for partition, stamped in found.items():
                if stamped is not None:
                    key = _key(partition)
                    starts[key] = min(starts[key], int(stamped.offset))
        keys = list(starts)
        await self._handler.revoked(keys)
        self._next.update(starts)
        self._rewind()
        await self._handler.assigned({key: self._next[key] for key in keys})

    # -- commits --------------------------------------------------------------------------

    async def commit_due(self) -> None:
        if time.monotonic() - self._last_commit >= self._settings.commit_interval_s:
            await self.commit_or_retry()

    async def commit_or_retry(self) -> bool:
        """``commit``, but a failure (a fenced member, a rebalance in progress, a broker away)
        is counted and logged instead of raised: nothing moved, so the same offsets go out with
        the next commit, after the rebalance. False when it failed."""
        try:
            await self.commit()
        except Exception as error:
            metrics.COMMIT_FAILURES.labels(self.group_id, type(error).__name__).inc()
            logger.warning("committing %s failed, retrying later: %r", self.topic, error)
            return False
        return True

    async def commit(self) -> None:
        """Commit what the handler finished, for owned partitions, only forward."""
        self._last_commit = time.monotonic()
        owned = {_key(partition) for partition in self.consumer.assignment()}
        moves = {
            key: offset
            for key, offset in self._handler.committable().items()
            if key in owned and offset > self._committed.get(key, -1)
        }
        if not moves:
            return
        await self.consumer.commit(
            {TopicPartition(*key): OffsetAndMetadata(offset, "") for key, offset in moves.items()}
        )
        now = time.monotonic()
        for key, offset in moves.items():
            self._committed[key] = offset
            self._advanced_at[key] = now

    async def report_lag(self) -> None:
        await report_consumer_lag(self.consumer, self.group_id)

    # -- rebalance --------------------------------------------------------------------------

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        keys = [_key(partition) for partition in revoked]
        await self.commit_or_retry()  # if it fails, the next owner re-reads the rest
        also_dropped = await self._handler.revoked(keys)
        for key in keys:
            self._next.pop(key, None)
            self._committed.pop(key, None)
            self._advanced_at.pop(key, None)
        forget_consumer_lag(self.group_id, revoked)
        self._read_again({key for key in also_dropped if key not in keys})

    def _read_again(self, keys: set[TopicPartitionKey]) -> None:
        """Partitions still owned whose handed-over records the handler dropped: fetch them
        again from their last commit."""
        for partition in self.consumer.assignment():
            if (key := _key(partition)) in keys and key in self._committed:
                self._next[key] = self._committed[key]
                self.consumer.seek(partition, self._committed[key])

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Tracking starts at the group's committed offset (or the log start).

        ``getmany`` may hand over records of these partitions while this awaits the broker;
        ``_owned_records`` drops them until the handler tracks the partition, and the seek
        to the start fetches them again, so none is skipped.
        """
        starts: dict[TopicPartitionKey, int] = {}
        beginnings = await self.consumer.beginning_offsets(assigned) if assigned else {}
        for partition in assigned:
            committed = await self.consumer.committed(partition)
            starts[_key(partition)] = committed if committed is not None else beginnings[partition]
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        logger.info("assigned partitions %s", sorted(starts.items()))
        await self._handler.assigned(starts)
        for partition in assigned:
            key = _key(partition)
            # The start counts as committed: a rewind never goes before it.
            self._next[key] = self._committed[key] = starts[key]
            self._advanced_at[key] = time.monotonic()
            self.consumer.seek(partition, starts[key])

    def _advance(self, key: TopicPartitionKey, *, next_offset: int) -> None:
        self._next[key] = next_offset
        self._advanced_at[key] = time.monotonic()

    # -- readiness --------------------------------------------------------------------------

    def stalled_partitions(self) -> list[TopicPartitionKey]:
        """Owned partitions with pending records that have not advanced for the stall timeout."""
        now = time.monotonic()
        stalled = []
        for partition in self.consumer.assignment():
            key = _key(partition)
            highwater = self.consumer.highwater(partition)
            waiting = highwater is not None and highwater > self._next.get(key, highwater)
            if not (waiting or self._handler.holds(key)):
                continue
            if now - self._advanced_at.get(key, now) > self._settings.stall_timeout_s:
                stalled.append(key)
        metrics.STALLED_PARTITIONS.labels(self.group_id).set(len(stalled))
        return sorted(stalled)

    def problem(self) -> str | None:
        """Why this loop is not making progress, or None."""
        if self._failure is not None:
            return f"consuming {self.topic} fails: {self._failure}"
        stalled = self.stalled_partitions()
        if stalled:
            names = ", ".join(f"{topic}[{partition}]" for topic, partition in stalled)
            return f"no progress for {self._settings.stall_timeout_s:g} s on {names}"
        return None
