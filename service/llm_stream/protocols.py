"""The Kafka-side boundaries of the roles, in one place (the engine's is ``engine.protocol``).

The worker's pipeline and the aggregator talk to Kafka only through these Protocols and data
types, so they run fast against fakes in unit tests and for real against Kafka in integration
and end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Protocol

from llm_stream.contracts import BatchObject, ResultMessage
from llm_stream.errors import LlmStreamError

TopicPartitionKey = tuple[str, int]


#: The headers of a record that has none (shared, so it must not be writable).
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class IncomingRecord(NamedTuple):
    """What the pipeline and the aggregator need of a consumed Kafka record.

    A named tuple: one is built for every record consumed, and a frozen dataclass's
    ``__init__`` (an ``object.__setattr__`` per field) cost the aggregator 0.4 us a line."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Mapping[str, str] = NO_HEADERS
    timestamp_ms: int | None = None

    @property
    def topic_partition(self) -> tuple[str, int]:
        return (self.topic, self.partition)


class MessageTooLargeError(LlmStreamError):
    """A record over the largest message the service may publish, even compressed."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes after compression, limit {limit}")
        self.size = size
        self.limit = limit


class ResultPublisher(Protocol):
    """Publishes what the worker produces; each call returns once the broker has it."""

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        """Raises MessageTooLargeError when the result cannot be published for its size."""
        ...

    async def publish_dead_letter(
        self, value: bytes | None, key: bytes | None, headers: Mapping[str, str]
    ) -> None: ...


class StatusPublisher(Protocol):
    """Publishes batch objects (progress and completion) keyed by batch id."""

    async def publish_status(self, batch: BatchObject) -> None: ...


class RecordHandler(Protocol):
    """What a consume loop feeds: the worker's pipeline or the aggregator.

    The loop owns fetching, rebalances and commits; the handler owns the records it is given
    and says which offsets are finished.
    """

    def capacity(self) -> int:
        """How many more records it takes now; 0 pauses fetching."""
        ...

    async def handle(self, records: Sequence[IncomingRecord]) -> None:
        """Take records (in partition order). Raising makes the loop re-read from the last
        commit, after ``revoked`` and ``assigned`` for every owned partition."""
        ...

    def committable(self) -> Mapping[TopicPartitionKey, int]:
        """Per partition, the next offset to commit: every record before it is finished."""
        ...

    async def assigned(self, partitions: Mapping[TopicPartitionKey, int]) -> None:
        """Partitions now owned, with the offset their records start from."""
        ...

    async def revoked(
        self, partitions: Sequence[TopicPartitionKey]
    ) -> Collection[TopicPartitionKey]:
        """Partitions no longer owned: forget them (late work on them must not commit).
        Returns other partitions whose state was dropped with them: the loop re-reads those
        from their last commit."""
        ...

    def holds(self, partition: TopicPartitionKey) -> bool:
        """True while records of ``partition`` are taken but unfinished (stall detection)."""
        ...
