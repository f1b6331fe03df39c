"""The boundaries of the pipeline, in one place.

The worker's pipeline talks to an inference engine, a publisher and an offset committer only
through these Protocols, so it runs fast against fakes in unit tests and for real against vLLM
and Kafka in integration and end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_stream.contracts import BatchObject, ResponseData, ResultMessage

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """What the pipeline and the aggregator need of a consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None

    @property
    def topic_partition(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One request line as the engine sees it."""

    method: str
    url: str
    body: dict[str, Any]
    trace_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """vLLM's own per-request timings, in seconds (absent for n > 1 or when stats are off)."""

    queue: float | None = None
    time_to_first_token: float | None = None
    generation: float | None = None


@dataclass(frozen=True, slots=True)
class EngineReply:
    response: ResponseData
    timings: EngineTimings | None = None


class EngineUnavailableError(RuntimeError):
    """The engine cannot answer any request (it died): the work must be redelivered, not failed."""


class InferenceEngine(Protocol):
    """Answers OpenAI requests as vLLM's OpenAI server would, without HTTP."""

    async def serve(self, request: EngineRequest) -> EngineReply:
        """The response (status code and body) for one request; errors are responses too.

        Raises EngineUnavailableError only when no request can be served any more.
        """
        ...

    async def check_health(self) -> None:
        """Raise EngineUnavailableError when the engine is dead."""
        ...

    async def close(self) -> None: ...

    @property
    def max_concurrency(self) -> int:
        """How many requests the engine schedules at once (vLLM's max_num_seqs)."""
        ...


class MessageTooLargeError(Exception):
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


class OffsetCommitter(Protocol):
    """Commits ``{(topic, partition): next_offset}`` for the consumer group."""

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None: ...


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

    async def revoked(self, partitions: Sequence[TopicPartitionKey]) -> None:
        """Partitions no longer owned: forget them (late work on them must not commit)."""
        ...

    def holds(self, partition: TopicPartitionKey) -> bool:
        """True while records of ``partition`` are taken but unfinished (stall detection)."""
        ...
