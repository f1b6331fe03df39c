"""Which offset of each partition is safe to commit when requests finish out of order.

A worker keeps hundreds of requests in flight; they finish in any order. Committing offset N
tells Kafka every record before N is done, so only the contiguous prefix of finished records
may be committed: a record still in flight holds its partition's commit back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

TopicPartitionKey = tuple[str, int]


class _PartitionState:
    __slots__ = ("committed", "finished", "pending", "pending_heap")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.pending_heap: list[int] = []
        self.finished: int | None = None  # highest finished offset seen
        self.committed: int | None = None  # last offset handed out for commit


class OffsetTracker:
    """Tracks started and finished offsets per partition and yields what may be committed."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _PartitionState] = {}

    def start(self, partition: TopicPartitionKey, offset: int) -> None:
        """Register a record before its work begins (records of a partition arrive in order)."""
        state = self._partitions.setdefault(partition, _PartitionState())
        state.pending.add(offset)
        heapq.heappush(state.pending_heap, offset)

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
        """Offsets to commit now (next offset to read), only where they moved forward."""
        result: dict[TopicPartitionKey, int] = {}
        for partition, state in self._partitions.items():
            if state.finished is None:
                continue
            # The first record still in flight, else one past the last finished.
            candidate = state.pending_heap[0] if state.pending_heap else state.finished + 1
            if state.committed is None or candidate > state.committed:
                result[partition] = candidate
        return result

    def mark_committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = offset

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Drop partitions this worker no longer owns (after a rebalance)."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def in_flight(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())
