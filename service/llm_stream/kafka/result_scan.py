"""A batch's results so far, read from the results topic: what the gateway serves while a
batch runs (an HTTP user's counterpart of a Kafka consumer of the topic).

Results are keyed by batch id, so a batch's results lie in one partition, the one the default
partitioner (murmur2, as every Kafka client's) gives its key. A page starts where the last one
stopped (an offset: the cursor), or at the first record no older than the batch's creation
(less a margin for the workers' clocks), and reads forward, keeping the batch's records, until
it holds ``limit`` results, finds nothing more to read, or has read ``budget`` records: a page
costs bounded time however busy the topic. The end the broker reports only decides how long to
wait for more (the embedded broker can under-report it), never where reading stops. The results
are the topic's: at least once (a redelivered request may have answered twice; its files hold
each ``custom_id`` once), and only as long as the topic keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from llm_stream.contracts import ResultMessage
from llm_stream.kafka.connection import bounded_consumer_kwargs, start_client
from llm_stream.settings import Settings

#: How far before the batch's creation its first result may be stamped (workers' clocks).
CLOCK_MARGIN_MS = 5 * 60_000
#: Records read at most for one page, of every batch sharing the partition.
SCAN_BUDGET = 20_000
_POLL_MS = 500
_PAST_END_POLL_MS = 150


class ResultsPage(NamedTuple):
    """Results in topic order, the offset to go on from, and whether the topic held more."""

    results: list[ResultMessage]
    next_offset: int
    has_more: bool


class ResultScanner:
    """One consumer without a group, shared by the pages asked for (one at a time)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.results_topic
        self._consumer: AIOKafkaConsumer | None = None
        self._turn = asyncio.Lock()
        self._partitioner = DefaultPartitioner()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def page(
        self, batch_id: str, *, created_at: int, after: int | None, limit: int
    ) -> ResultsPage:
        """Up to ``limit`` of the batch's results from offset ``after`` (None: from the
        batch's creation)."""
        async with self._turn:
            consumer = await self._started()
            partitions = sorted(consumer.partitions_for_topic(self._topic) or ())
            if not partitions:  # not in this consumer's metadata yet
                await consumer.topics()
                partitions = sorted(consumer.partitions_for_topic(self._topic) or ())
            if not partitions:
                return ResultsPage([], after or 0, False)
            key = batch_id.encode()
            tp = TopicPartition(self._topic, self._partitioner(key, partitions, partitions))
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = after if after is not None else await self._first_at(consumer, tp, created_at)
            consumer.seek(tp, start)
            return await self._read(consumer, tp, key, start, end, limit)

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        key: bytes,
        start: int,
        end: int,
        limit: int,
    ) -> ResultsPage:
        found: list[ResultMessage] = []
        position, budget = start, SCAN_BUDGET
        while len(found) < limit and budget > 0:
            # Past the end the broker reported, look briefly: some brokers under-report it.
            wait_ms = _POLL_MS if position < end else _PAST_END_POLL_MS
            fetched = await consumer.getmany(tp, timeout_ms=wait_ms, max_records=min(budget, 500))
            records = fetched.get(tp, [])
            if not records:
                break  # nothing more for now
            for record in records:
                position = record.offset + 1
                budget -= 1
                if record.key == key and record.value is not None:
                    with contextlib.suppress(pydantic.ValidationError):
                        found.append(ResultMessage.model_validate_json(record.value))
                if len(found) >= limit:
                    break
        stopped_short = len(found) >= limit or budget <= 0
        return ResultsPage(found, position, stopped_short or position < end)

    async def _first_at(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, created_at: int
    ) -> int:
        since_ms = max(0, created_at * 1000 - CLOCK_MARGIN_MS)
        found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
        if found is not None:
            return int(found.offset)
        return int((await consumer.end_offsets([tp]))[tp])

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            connection = bounded_consumer_kwargs(self._settings)
            consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False)
            await start_client(consumer, connection)
            self._consumer = consumer
        return self._consumer
