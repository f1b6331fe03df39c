"""Where the aggregator may commit its results partitions: the partition side of its state.

Per partition assigned here: how far it was read (its high-water mark), and which partitions are
assigned at all. With the open batches' first offsets this gives the commit point: no further
than the first result of the earliest unwritten batch in the partition, else all it read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord, TopicPartitionKey

if TYPE_CHECKING:
    from llm_stream.aggregator.open_batch import OpenBatch


class PartitionMarks:
    """High-water marks and ownership of the results partitions."""

    def __init__(self) -> None:
        self._high_water: dict[TopicPartitionKey, int] = {}
        #: Partitions assigned here (``assign``); None until the first assignment: all of them.
        self._owned: set[TopicPartitionKey] | None = None
        #: How often each partition was released: a poll taken before a release is stale
        #: even if the partition is assigned here again (it is re-read from its commit).
        self._releases: dict[TopicPartitionKey, int] = {}

    def read(self, partition: TopicPartitionKey, offset: int) -> None:
        """The record at ``offset`` was taken (spooled, or known not to be needed)."""
        self._high_water[partition] = max(self._high_water.get(partition, 0), offset + 1)

    def releases(self) -> dict[TopicPartitionKey, int]:
        """A snapshot to take with a poll, for ``owned``."""
        return dict(self._releases)

    def owned(
        self, records: Sequence[IncomingRecord], polled: Mapping[TopicPartitionKey, int]
    ) -> Sequence[IncomingRecord]:
        """The records of partitions assigned here and not released since the poll
        (``polled``: ``releases()`` then): a poll handed over in steps may outlive its
        partitions' revoke, and what a revoked partition left behind belongs to its next owner,
        or to its re-read here (spooled, it would hold stale offsets)."""
        if self._owned is None and not self._releases:
            return records
        owned = [
            record
            for record in records
            if (self._owned is None or record.topic_partition in self._owned)
            and self._releases.get(record.topic_partition, 0)
            == polled.get(record.topic_partition, 0)
        ]
        if len(owned) < len(records):
            metrics.RESULTS_REVOKED.inc(len(records) - len(owned))
        return owned

    def assign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        self._owned = (self._owned or set()) | set(partitions)

    def release(
        self, partitions: set[TopicPartitionKey], batches: Mapping[str, OpenBatch]
    ) -> tuple[set[TopicPartitionKey], set[str]]:
        """Stop taking ``partitions`` and forget how far every partition they spread to was
        read: the partitions released and the batches to drop (``spread_of_release``)."""
        if self._owned is not None:
            self._owned -= partitions
        released, dropped = spread_of_release(partitions, batches)
        for partition in released:
            self._high_water.pop(partition, None)
            self._releases[partition] = self._releases.get(partition, 0) + 1
        return released, dropped

    def committable(self, batches: Iterable[OpenBatch]) -> dict[TopicPartitionKey, int]:
        return committable_offsets(self._high_water, batches)


def committable_offsets(
    high_water: Mapping[TopicPartitionKey, int], batches: Iterable[OpenBatch]
) -> dict[TopicPartitionKey, int]:
    """Per partition read: the first offset of its earliest open batch, else all it read."""
    offsets = dict(high_water)
    for batch in batches:
        for partition, first in batch.first_offsets.items():
            if partition in offsets:
                offsets[partition] = min(offsets[partition], first)
    return offsets


def spread_of_release(
    partitions: set[TopicPartitionKey], batches: Mapping[str, OpenBatch]
) -> tuple[set[TopicPartitionKey], set[str]]:
    """Releasing ``partitions`` drops every open batch with results on them, and so every
    partition those batches hold results on too, until nothing more spreads: the partitions
    released and the batches dropped."""
    released = set(partitions)
    dropped: set[str] = set()
    grew = True
    while grew:
        grew = False
        for batch_id, batch in batches.items():
            if batch_id not in dropped and not released.isdisjoint(batch.first_offsets):
                dropped.add(batch_id)
                grew = grew or not released.issuperset(batch.first_offsets)
                released.update(batch.first_offsets)
    return released, dropped
