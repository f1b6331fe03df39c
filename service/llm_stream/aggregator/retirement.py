"""Retire batches that ended long ago from the compacted topics, so history stops growing.

The batches and batch-status topics are compacted by batch id: without a tombstone a batch's
last record stays for ever, and everything that reads those topics from their start (the
aggregators' manifest and cancel readers, the gateway's view, the notifier) reads every batch
ever. A batch that ended more than ``batch_retention_s`` ago gets a tombstone on both topics
(its files stay in the store), and each of its judged lines one on the judgements topic (the
gateways' judgement indexes delete them); the aggregator that owns its results partition
publishes them.

A sweep reads the batch-status topic once, from its start to its end, and keeps nothing
between sweeps. On a broker that compacts, retired batches vanish from
the next sweep; on one that does not, a batch whose tombstone is already in the log is not
retired twice (the sweep keeps, while it reads, the batches it would retire).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.contracts import BatchObject
from llm_stream.kafka.connection import bounded_consumer_kwargs, client_kwargs
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

_FETCH_MS = 1000


def ended_at(batch: BatchObject) -> int | None:
    """When a batch in a terminal status reached it; None while it has not ended."""
    if batch.status not in TERMINAL_STATUSES:
        return None
    ends = (batch.completed_at, batch.failed_at, batch.expired_at, batch.cancelled_at)
    return max((end for end in ends if end is not None), default=batch.created_at)


def retirable(value: bytes | None, *, ended_before: float) -> bool | None:
    """Whether a status record says its batch ended before ``ended_before``; None for a
    tombstone (the batch is retired already)."""
    if value is None:
        return None
    try:
        batch = BatchObject.model_validate_json(value)
    except pydantic.ValidationError:
        return False
    end = ended_at(batch)
    return end is not None and end < ended_before


async def retire_history(
    settings: Settings, owns: Callable[[str], bool], *, now: float
) -> list[str]:
    """One sweep: tombstones for every owned batch that ended ``batch_retention_s`` before
    ``now``, and for its lines' judgements. Returns the ids retired."""
    topic = settings.batch_status_topic
    async with _reading(settings) as consumer:
        candidates = await _read_candidates(
            consumer, topic, ended_before=now - settings.batch_retention_s
        )
    retired = [batch_id for batch_id in candidates if owns(batch_id)]
    if not retired:
        return []
    # A consumer of its own: one assigned a topic forgets the other topics' metadata.
    async with _reading(settings) as consumer:
        judged = await _judged_lines(consumer, settings.judgements_topic, set(retired))
    keys = [batch_id.encode() for batch_id in retired]
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    try:
        await producer.start()
        # The judgements, then the manifests, then the statuses: a sweep cut short leaves a
        # status (the batch is retired again by the next sweep, its judgements with it), never
        # a manifest whose status is gone (read as validating for ever), nor judgements of a
        # batch no sweep will see again.
        for retired_topic, retired_keys in (
            (settings.judgements_topic, judged),
            (settings.batches_topic, keys),
            (topic, keys),
        ):
            for key in retired_keys:
                await producer.send(retired_topic, None, key=key)
            await producer.flush()
    finally:
        await producer.stop()
    return retired


@asynccontextmanager
async def _reading(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(**bounded_consumer_kwargs(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()  # also after a failed start: its connections are closed


async def _read_to_end(consumer: AIOKafkaConsumer, topic: str) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topic``, until the end each partition's fetches report (not the ends
    ListOffsets answers: some brokers under-report them) or until a fetch brings nothing."""
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:
        return
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    pending = set(partitions)
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=_FETCH_MS, max_records=500)
        if not fetched:
            logger.info("history sweep of %s ended before the end of %s", topic, sorted(pending))
            break  # nothing more to read now (a later sweep reads further)
        for records in fetched.values():
            for record in records:
                yield record
        for tp in list(pending):
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end:
                pending.discard(tp)


async def _read_candidates(
    consumer: AIOKafkaConsumer, topic: str, *, ended_before: float
) -> dict[str, None]:
    """The batches whose latest record says they ended before ``ended_before`` (in the order
    read)."""
    candidates: dict[str, None] = {}
    async for record in _read_to_end(consumer, topic):
        if record.key is None:
            continue
        batch_id = record.key.decode(errors="replace")
        if retirable(record.value, ended_before=ended_before):
            candidates[batch_id] = None
        else:  # a tombstone, or a later record of a batch not (yet) to retire
            candidates.pop(batch_id, None)
    return candidates


async def _judged_lines(
    consumer: AIOKafkaConsumer, topic: str, retired: Collection[str]
) -> list[bytes]:
    """The keys (``<batch_id>/<custom_id>``) of the judged lines of ``retired`` batches whose
    latest record is no tombstone yet. Held while the sweep runs: the judgements of the
    batches it retires, a bound set by people's reviews."""
    judged: dict[bytes, None] = {}
    async for record in _read_to_end(consumer, topic):
        key = record.key
        if key is None or key.partition(b"/")[0].decode(errors="replace") not in retired:
            continue
        if record.value is None:
            judged.pop(key, None)
        else:
            judged[key] = None
    return list(judged)
