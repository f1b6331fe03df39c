"""Judgements on the compacted judgements topic: published, followed, read once for a batch.

The topic is the only store: the last record of a ``batch_id/custom_id`` key is that line's
judgement, so any service reads them by following it; no database to run or replicate (a
gateway keeps what it read in a file of its own, a cache rebuilt on start: ``judgement_index``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llm_stream.contracts import Judgement
from llm_stream.curation.judgement_index import (
    Forgotten,
    JudgementIndex,
    Record,
    line_of,
    parse_judgement,
)
from llm_stream.kafka.connection import bounded_consumer_kwargs, client_kwargs, start_client
from llm_stream.kafka.records import install_lenient_record_parsing
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.ops.metrics import JUDGEMENTS
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

_POLL_MS = 500


class Judgements(Protocol):
    """The judgements the gateway answers from: its review API and its web page."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def problem(self) -> str | None:
        """Why the judgements read may be out of date (readiness), or None."""
        ...

    def of_batch(self, batch_id: str, after: str = "", limit: int = -1) -> list[Judgement]:
        """Up to ``limit`` (-1: every) of the batch's judgements by custom_id, after the
        custom_id ``after``."""
        ...

    def of_lines(self, batch_id: str, custom_ids: Iterable[str]) -> dict[str, Judgement]:
        """The judgements of these lines (a page's), by custom_id."""
        ...

    async def put(self, judgement: Judgement) -> None:
        """Store a judgement; once it returns, the reads above see it."""
        ...


class MemoryJudgements:
    """Every judgement, by batch, in memory: for tests and the in-memory stream (a gateway fed
    by Kafka keeps them on disk, ``KafkaJudgements``)."""

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

    def of_batch(self, batch_id: str, after: str = "", limit: int = -1) -> list[Judgement]:
        lines = self._by_batch.get(batch_id, {})
        found = [lines[custom_id] for custom_id in sorted(lines) if custom_id > after]
        return found if limit < 0 else found[:limit]

    def of_lines(self, batch_id: str, custom_ids: Iterable[str]) -> dict[str, Judgement]:
        lines = self._by_batch.get(batch_id, {})
        return {custom_id: lines[custom_id] for custom_id in custom_ids if custom_id in lines}

    async def put(self, judgement: Judgement) -> None:
        self.take(judgement)


class KafkaJudgements:
    """The judgements topic followed whole into a ``JudgementIndex`` on disk (memory stays
    flat in the history); ``put`` publishes, waits for the broker's acknowledgement and is
    then read back at once by its writer."""

    def __init__(self, settings: Settings, index_root: Path | None = None) -> None:
        self._settings = settings
        self._index_root = index_root
        self._index: JudgementIndex | None = None
        self._follower = TopicFollower(settings, settings.judgements_topic, self._heard)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._index = JudgementIndex(self._index_root)
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
        index, self._index = self._index, None
        if index is not None:
            index.close()

    def problem(self) -> str | None:
        """Not ready while the topic is not followed, or its history is not read yet (a
        missing topic has none to read)."""
        if (problem := self._follower.problem()) is not None:
            return problem
        if not (self._follower.caught_up or self._follower.missing):
            return f"still reading the history of {self._settings.judgements_topic}"
        return None

    def of_batch(self, batch_id: str, after: str = "", limit: int = -1) -> list[Judgement]:
        return self._started().of_batch(batch_id, after, limit)

    def of_lines(self, batch_id: str, custom_ids: Iterable[str]) -> dict[str, Judgement]:
        return self._started().of_lines(batch_id, custom_ids)

    async def put(self, judgement: Judgement) -> None:
        index = self._started()
        if self._producer is None:
            raise RuntimeError("judgements not started")
        value = judgement.model_dump_json().encode()
        await self._producer.send_and_wait(
            self._settings.judgements_topic, value, key=judgement.key
        )
        JUDGEMENTS.labels(judgement.verdict).inc()
        await index.apply([Record(judgement.key, value)])

    def _started(self) -> JudgementIndex:
        if self._index is None:
            raise RuntimeError("judgements not started")
        return self._index

    async def _heard(self, records: Sequence[IncomingRecord]) -> None:
        await self._started().apply([Record(record.key, record.value) for record in records])


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


async def read_judgements(
    settings: Settings, batch_id: str
) -> AsyncIterator[Judgement | Forgotten]:
    """Every judgement of ``batch_id`` the topic holds, and its tombstones, read once up to
    its end, in order per line (a later one of a line replaces an earlier, a tombstone
    deletes it): for exports."""
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
                    found = _of_batch(record.key, record.value, batch_id)
                    if found is not None:
                        yield found
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()


def _of_batch(
    key: bytes | None, value: bytes | None, batch_id: str
) -> Judgement | Forgotten | None:
    """The record's judgement, or the line its tombstone deletes, if it is ``batch_id``'s."""
    if value is None:
        line = line_of(key)
        return Forgotten(*line) if line is not None and line[0] == batch_id else None
    found = parse_judgement(value)
    return found if found is not None and found.batch_id == batch_id else None
