"""Retire batches that ended long ago from the compacted topics, so history stops growing.

The batches and batch-status topics are compacted by batch id: without a tombstone a batch's
last record stays for ever, and everything that reads those topics from their start (the
aggregators' manifest and cancel readers, the gateway's view, the notifier) reads every batch
ever. A batch that ended more than ``batch_retention_s`` ago gets a tombstone on both topics
(its files stay in the store); the aggregator that owns its results partition publishes them.

A sweep reads the batch-status topic once, from its start to its end, and keeps nothing
between sweeps. On a broker that compacts, retired batches vanish from
the next sweep; on one that does not, a batch whose tombstone is already in the log is not
retired twice (the sweep keeps, while it reads, the batches it would retire).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

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
    ``now``. Returns the ids retired."""
    topic = settings.batch_status_topic
    consumer = AIOKafkaConsumer(**bounded_consumer_kwargs(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        candidates = await _read_candidates(
            consumer, topic, ended_before=now - settings.batch_retention_s
        )
    finally:
        await consumer.stop()  # also after a failed start: its connections are closed
    retired = [batch_id for batch_id in candidates if owns(batch_id)]
    if not retired:
        return []
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    try:
        await producer.start()
        # The manifests first: a sweep cut short between the two leaves a status (retired by
        # the next sweep), never a manifest whose status is gone (read as validating for ever).
        for retired_topic in (settings.batches_topic, topic):
            for batch_id in retired:
                await producer.send(retired_topic, None, key=batch_id.encode())
            await producer.flush()
    finally:
        await producer.stop()
    return retired


async def _read_candidates(
    consumer: AIOKafkaConsumer, topic: str, *, ended_before: float
) -> dict[str, None]:
    """The batches whose latest record says they ended before ``ended_before`` (in the order
    read), reading until the end each partition's fetches report (not the ends ListOffsets
    answers: some brokers under-report them) or until a fetch brings nothing."""
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:
        return {}
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    candidates: dict[str, None] = {}
    pending = set(partitions)
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=_FETCH_MS, max_records=500)
        if not fetched:
            logger.info("history sweep of %s ended before the end of %s", topic, sorted(pending))
            break  # nothing more to read now (a later sweep reads further)
        for records in fetched.values():
            for record in records:
                if record.key is None:
                    continue
                batch_id = record.key.decode(errors="replace")
                if retirable(record.value, ended_before=ended_before):
                    candidates[batch_id] = None
                else:  # a tombstone, or a later record of a batch not (yet) to retire
                    candidates.pop(batch_id, None)
        for tp in list(pending):
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end:
                pending.discard(tp)
    return candidates
