"""Which offset of each partition is safe to commit when requests finish out of order.

A worker keeps hundreds of requests in flight; they finish in any order. Committing offset N
tells Kafka every record before N is done, so only the contiguous prefix of finished records
may be committed: a record still in flight holds its partition's commit back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from llm_stream.protocols import TopicPartitionKey


class _PartitionState:
    __slots__ = ("finished", "pending", "pending_heap")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.pending_heap: list[int] = []
        self.finished: int | None = None  # highest finished offset seen


class OffsetTracker:
    """Tracks started and finished offsets of owned partitions; yields what may be committed.

    Only partitions announced with ``assign`` are tracked: a record of any other partition is
    refused, so work that outlives a rebalance can never move a new owner's commit.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _PartitionState] = {}

    def assign(self, partition: TopicPartitionKey) -> None:
        """Start tracking a partition this member now owns (from a clean slate)."""
        self._partitions[partition] = _PartitionState()

    def start(self, partition: TopicPartitionKey, offset: int) -> bool:
        """Register a record before its work begins (records of a partition arrive in order).

        False when the partition is not owned: the record must not be worked on.
        """
        state = self._partitions.get(partition)
        if state is None:
            return False
        state.pending.add(offset)
        heapq.heappush(state.pending_heap, offset)
        return True

    def finish(self, partition: TopicPartitionKey, offset: int) -> None:
        """Mark a record done: its result (or dead letter) is published."""
        state = self._partitions.get(partition)
        if state is None or offset not in state.pending:
            return  # the partition was revoked meanwhile: its new owner re-reads the record
        state.pending.discard(offset)
        state.finished = offset if state.finished is None else max(state.finished, offset)
        while state.pending_heap and state.pending_heap[0] not in state.pending:
            heapq.heappop(state.pending_heap)

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Per owned partition: the first record still in flight, else one past the last
        finished (the next offset to read)."""
        result: dict[TopicPartitionKey, int] = {}
        for partition, state in self._partitions.items():
            if state.finished is None:
                continue
            result[partition] = state.pending_heap[0] if state.pending_heap else state.finished + 1
        return result

    def holds(self, partition: TopicPartitionKey) -> bool:
        state = self._partitions.get(partition)
        return state is not None and bool(state.pending)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Drop partitions this worker no longer owns (after a rebalance)."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def in_flight(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())
