"""Records fetched but not yet started, taken most urgent first: the worker's waiting queue.

Why: the consume loop fetches in partition order, so an interactive request published behind
10,000 batch lines would otherwise wait for all of them. Fetched records wait here (bounded in
records and bytes; when full the pipeline's capacity is 0 and the consume loop pauses), and the
pipeline starts the most urgent whenever the engine has room.

Order: by ``arrival + priority * aging_s`` (lower first), then arrival order. So within one
priority it is FIFO, and a more urgent request overtakes less urgent ones that arrived less
than ``aging_s`` per level of difference before it. Nothing starves: a waiting record is
overtaken only by records that arrived within that span, and ``aging_s=None`` drops aging
(strict priority: under a steady stream of more urgent work, less urgent work waits
indefinitely).

The offsets of waiting records are registered with the ``OffsetTracker`` when they enter (in
partition order), so a waiting record holds its partition's commit back until it is answered.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Collection

from llm_stream.batch.priority import priority_of
from llm_stream.protocols import IncomingRecord, TopicPartitionKey


class WaitingQueue:
    """A bounded priority queue of records (see the module docstring for the order)."""

    def __init__(
        self,
        *,
        max_records: int,
        max_bytes: int,
        aging_s: float | None = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._aging_s = aging_s
        self._clock = clock
        self._heap: list[tuple[float, int, IncomingRecord]] = []
        self._arrivals = itertools.count()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._heap)

    def room(self) -> int:
        """How many more records may be fetched for it (0 once either bound is reached; one
        fetch may overshoot the byte bound by at most its own size)."""
        if self.bytes >= self._max_bytes:
            return 0
        return max(0, self._max_records - len(self._heap))

    def push(self, record: IncomingRecord) -> None:
        priority = priority_of(record.headers) or 0
        if self._aging_s is None:
            rank = float(priority)
        else:
            rank = self._clock() + priority * self._aging_s
        heapq.heappush(self._heap, (rank, next(self._arrivals), record))
        self.bytes += _size(record)

    def pop(self) -> IncomingRecord:
        """The most urgent record (IndexError when empty)."""
        _, _, record = heapq.heappop(self._heap)
        self.bytes -= _size(record)
        return record

    def drop(self, partitions: Collection[TopicPartitionKey]) -> int:
        """Forget the records of ``partitions`` (revoked: their new owner re-reads them)."""
        kept = [entry for entry in self._heap if entry[2].topic_partition not in partitions]
        dropped = len(self._heap) - len(kept)
        if dropped:
            heapq.heapify(kept)
            self._heap = kept
            self.bytes = sum(_size(entry[2]) for entry in kept)
        return dropped

    def clear(self) -> None:
        self._heap.clear()
        self.bytes = 0


def _size(record: IncomingRecord) -> int:
    return len(record.value) if record.value is not None else 0
