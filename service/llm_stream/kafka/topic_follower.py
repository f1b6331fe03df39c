"""Read a whole topic, every partition from its beginning, then follow it: for the small,
compacted topics every process reads in full (batch manifests, batch objects).

No consumer group: each process reads everything, whoever owns which results or requests. A
fetch error (or a callback's) seeks every partition back to the first record not handed over
(records drained from other partitions before the error would otherwise be lost) and retries;
while it lasts, ``problem`` says so, for readiness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from llm_stream.kafka.connection import bounded_consumer_kwargs
from llm_stream.kafka.records import decode_record, install_lenient_record_parsing
from llm_stream.ops.memory import release_free_heap
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Called with the records of one partition from one fetch, in order.
RecordsCallback = Callable[[Sequence[IncomingRecord]], Awaitable[None]]

_POLL_MS = 1000
#: Records taken per poll: a long topic is caught up on in small pieces, whose decoded objects
#: are let go before the next (memory stays flat in the topic's length).
_RECORDS_PER_POLL = 500
_RETRY_S = 1.0


class TopicFollower:
    """Hands every record of ``topic`` to ``on_records``, in partition order, forever: a
    fetch's records at once, so that a callback can look things up for many at a time."""

    def __init__(
        self,
        connection: Settings | Mapping[str, Any],
        topic: str,
        on_records: RecordsCallback,
    ) -> None:
        """``connection``: the settings (fetches bounded by them), or a client's aiokafka
        keyword arguments."""
        self.topic = topic
        self._connection = (
            bounded_consumer_kwargs(connection) if isinstance(connection, Settings) else connection
        )
        self._on_records = on_records
        self._running = False
        self._failure: str | None = None
        #: Every partition was read, once, up to the end its fetches reported: the history is in.
        self.caught_up = False
        #: The topic has no partitions (nobody created it yet): there is no history to read.
        self.missing = False
        #: Set once the history is read, or the topic is found missing.
        self.settled = asyncio.Event()

    def problem(self) -> str | None:
        """Why the topic is not being followed now, or None."""
        if not self._running:
            return f"not following {self.topic}"
        if self._failure is not None:
            return f"reading {self.topic} fails: {self._failure}"
        return None

    async def run(self) -> None:
        install_lenient_record_parsing()
        consumer = AIOKafkaConsumer(**self._connection, enable_auto_commit=False)
        await consumer.start()
        self._running = True
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions:  # not in the metadata yet (or not created yet): ask again
                # AIOKafkaConsumer has no public refresh of what partitions_for_topic reads.
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    self.missing = True
                    self.settled.set()
                    self._failure = f"topic {self.topic} has no partitions (yet)"
                    await asyncio.sleep(_RETRY_S)
            self.missing = False
            self._failure = None
            assigned = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            following = {tp: await consumer.position(tp) for tp in assigned}
            while True:
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=_POLL_MS, max_records=_RECORDS_PER_POLL
                    )
                    for tp, records in fetched.items():
                        if records:
                            await self._on_records([decode_record(r) for r in records])
                            following[tp] = records[-1].offset + 1
                except Exception as error:  # a fetch, or the callback (a store, a publish)
                    self._failure = f"{type(error).__name__}: {error}"[:500]
                    logger.error("reading %s failed: %s", self.topic, self._failure)
                    for tp, offset in following.items():
                        consumer.seek(tp, offset)  # handed over again: callbacks are idempotent
                    await asyncio.sleep(_RETRY_S)
                    continue
                self._failure = None
                if not self.caught_up and all(
                    (end := consumer.highwater(tp)) is not None and offset >= end
                    for tp, offset in following.items()
                ):
                    self.caught_up = True
                    self.settled.set()
                    release_free_heap()  # what reading the history decoded is garbage now
        finally:
            self._running = False
            await consumer.stop()
