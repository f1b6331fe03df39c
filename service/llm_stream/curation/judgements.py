"""Judgements on the compacted judgements topic: published, followed, read once for a batch.

The topic is the only store: the last record of a ``batch_id/custom_id`` key is that line's
judgement, so any service reads them by following it; no database to run or replicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llm_stream.contracts import Judgement
from llm_stream.kafka.connection import bounded_consumer_kwargs, client_kwargs, start_client
from llm_stream.kafka.records import install_lenient_record_parsing
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.ops.metrics import JUDGEMENTS
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

_POLL_MS = 500


def parse_judgement(value: bytes | None) -> Judgement | None:
    """A record's judgement, or None (a tombstone, or a record that is none)."""
    if value is None:
        return None
    try:
        return Judgement.model_validate_json(value)
    except pydantic.ValidationError:
        return None


class MemoryJudgements:
    """The judgements of every line, by batch, in memory: what the gateway answers from.
    Reviews are made by people, so their count stays far below the lines a batch holds."""

    def __init__(self) -> None:
        self._by_batch: dict[str, dict[str, Judgement]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def problem(self) -> str | None:
        return None

    def take(self, judgement: Judgement) -> None:
        lines = self._by_batch.setdefault(judgement.batch_id, {})
        known = lines.get(judgement.custom_id)
        if known is None or known.judged_at <= judgement.judged_at:
            lines[judgement.custom_id] = judgement

    def of_batch(self, batch_id: str) -> list[Judgement]:
        """The batch's judgements by custom_id."""
        lines = self._by_batch.get(batch_id, {})
        return [lines[custom_id] for custom_id in sorted(lines)]

    def of_line(self, batch_id: str, custom_id: str) -> Judgement | None:
        return self._by_batch.get(batch_id, {}).get(custom_id)

    def of_lines(self, batch_id: str, custom_ids: Iterable[str]) -> dict[str, Judgement]:
        """The judgements of these lines (a page's), by custom_id."""
        lines = self._by_batch.get(batch_id, {})
        return {custom_id: lines[custom_id] for custom_id in custom_ids if custom_id in lines}

    async def put(self, judgement: Judgement) -> None:
        self.take(judgement)


class KafkaJudgements(MemoryJudgements):
    """``MemoryJudgements`` fed by following the topic whole; ``put`` publishes, waits for the
    broker's acknowledgement and is then read back at once by its writer."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._follower = TopicFollower(settings, settings.judgements_topic, self._heard)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        connection = client_kwargs(self._settings)
        producer = AIOKafkaProducer(**connection, acks="all")
        await start_client(producer, connection)
        self._producer = producer
        self._task = asyncio.create_task(self._follower.run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def problem(self) -> str | None:
        return self._follower.problem()

    async def put(self, judgement: Judgement) -> None:
        if self._producer is None:
            raise RuntimeError("judgements not started")
        await self._producer.send_and_wait(
            self._settings.judgements_topic,
            judgement.model_dump_json().encode(),
            key=judgement.key,
        )
        JUDGEMENTS.labels(judgement.verdict).inc()
        self.take(judgement)

    async def _heard(self, records: Sequence[IncomingRecord]) -> None:
        for record in records:
            found = parse_judgement(record.value)
            if found is not None:
                self.take(found)


async def publish_judgements(settings: Settings, judgements: Iterable[Judgement]) -> int:
    """Publish judgements (Label Studio's, pulled) as they come; how many the broker
    acknowledged."""
    connection = client_kwargs(settings)
    producer = AIOKafkaProducer(**connection, acks="all", linger_ms=5)
    await start_client(producer, connection)
    verdicts: Counter[str] = Counter()
    try:
        sent = []
        for item in judgements:
            value = item.model_dump_json().encode()
            sent.append(await producer.send(settings.judgements_topic, value, key=item.key))
            verdicts[item.verdict] += 1
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()
    for verdict, count in verdicts.items():
        JUDGEMENTS.labels(verdict).inc(count)
    return len(sent)


async def read_judgements(settings: Settings, batch_id: str) -> AsyncIterator[Judgement]:
    """Every judgement of ``batch_id`` the topic holds, read once up to its end, oldest
    first per line (a later one of a line replaces an earlier): for exports."""
    install_lenient_record_parsing()
    consumer = AIOKafkaConsumer(**bounded_consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.judgements_topic) or set()
        assigned = [TopicPartition(settings.judgements_topic, p) for p in partitions]
        if not assigned:
            return
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        left = {tp for tp in assigned if ends[tp] > 0}
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=_POLL_MS)
            for records in fetched.values():
                for record in records:
                    found = parse_judgement(record.value)
                    if found is not None and found.batch_id == batch_id:
                        yield found
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
