"""The notifier as a consume loop's ``RecordHandler``: every terminal batch object read from
the batch-status topic is delivered to every endpoint, many batches at once.

Each terminal record becomes a task; a slow endpoint holds only its own batch's task, not the
others'. A record's offset finishes once every endpoint has the event or its failure is
recorded, and only the contiguous prefix of finished offsets is committed (``OffsetTracker``):
a restart resumes at the first record whose delivery was not settled, so a delivery is never
lost and is repeated only when it was under way (receivers deduplicate by the event id).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import httpx
import pydantic

from llm_stream.contracts import BatchObject
from llm_stream.kafka.offsets import OffsetTracker
from llm_stream.notifier.delivery import DeliveryOutcome, RetryPolicy, Sleep, deliver
from llm_stream.notifier.endpoints import WebhookEndpoint
from llm_stream.notifier.events import BatchEvent, event_of
from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord, TopicPartitionKey

logger = logging.getLogger(__name__)

#: Records a final failure (on a topic); raising makes the notifier try again later.
FailureRecorder = Callable[[DeliveryOutcome], Awaitable[None]]

#: Event ids remembered as delivered (or under way), to skip a batch's repeated terminal
#: record in this process; older ones are forgotten first.
SEEN_EVENTS_LIMIT = 100_000
_RECORD_RETRY_S = 5.0

_Place = tuple[TopicPartitionKey, int, str]  # partition, offset, event id


class WebhookNotifier:
    """Delivers the events of terminal batch objects; says which offsets are settled."""

    def __init__(
        self,
        endpoints: Sequence[WebhookEndpoint],
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        record_failure: FailureRecorder,
        *,
        max_concurrent: int,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._endpoints = list(endpoints)
        self._client = client
        self._policy = policy
        self._record_failure = record_failure
        self._max_concurrent = max_concurrent
        self._sleep = sleep
        self._offsets = OffsetTracker()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tasks: dict[asyncio.Task[None], _Place] = {}

    # -- RecordHandler ----------------------------------------------------------------------

    def capacity(self) -> int:
        return max(0, self._max_concurrent - len(self._tasks))

    async def handle(self, records: Sequence[IncomingRecord]) -> None:
        for record in records:
            if not self._offsets.start(record.topic_partition, record.offset):
                continue  # revoked meanwhile: the new owner delivers it
            event = self._new_event(record)
            if event is None:
                self._offsets.finish(record.topic_partition, record.offset)
                continue
            self._remember(event.id)
            task = asyncio.create_task(self._deliver_everywhere(event))
            self._tasks[task] = (record.topic_partition, record.offset, event.id)
            task.add_done_callback(self._settled)

    def committable(self) -> Mapping[TopicPartitionKey, int]:
        return self._offsets.committable()

    async def assigned(self, partitions: Mapping[TopicPartitionKey, int]) -> None:
        for partition in partitions:
            self._offsets.assign(partition)

    async def revoked(self, partitions: Sequence[TopicPartitionKey]) -> tuple[()]:
        """Stop delivering for partitions now another member's: it delivers them again."""
        gone = set(partitions)
        self._offsets.forget(gone)
        cancelled = [task for task, place in self._tasks.items() if place[0] in gone]
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        return ()

    def holds(self, partition: TopicPartitionKey) -> bool:
        return self._offsets.holds(partition)

    # -- the role's lifecycle -----------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, within_s: float) -> bool:
        """Let deliveries under way finish for ``within_s`` seconds; cancel the rest (their
        records stay uncommitted, so they are delivered again). True when none was left."""
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=within_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return not pending

    # -- deliveries ---------------------------------------------------------------------------

    def _new_event(self, record: IncomingRecord) -> BatchEvent | None:
        """The event to deliver for ``record``; None for a batch under way, a tombstone, a
        record that is no batch object, or an event this process already took."""
        if record.value is None:
            return None
        try:
            batch = BatchObject.model_validate_json(record.value)
        except pydantic.ValidationError as error:
            logger.warning(
                "skipping %s[%d]@%d, not a batch object: %s",
                record.topic,
                record.partition,
                record.offset,
                str(error)[:200],
            )
            return None
        event = event_of(batch)
        if event is None or event.id in self._seen:
            return None
        return event

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENTS_LIMIT:
            self._seen.popitem(last=False)

    async def _deliver_everywhere(self, event: BatchEvent) -> None:
        outcomes = await asyncio.gather(
            *(
                deliver(self._client, endpoint, event, self._policy, sleep=self._sleep)
                for endpoint in self._endpoints
            )
        )
        for outcome in outcomes:
            outcome_name = "delivered" if outcome.delivered else "failed"
            if not outcome.delivered:
                await self._record(outcome)
            metrics.WEBHOOK_DELIVERIES.labels(event.type, outcome_name).inc()

    async def _record(self, outcome: DeliveryOutcome) -> None:
        """Record a final failure, retrying until it is recorded: the offset waits for it."""
        while True:
            try:
                await self._record_failure(outcome)
                return
            except Exception as error:
                logger.warning("recording the failed delivery of %s: %s", outcome.event.id, error)
                await self._sleep(_RECORD_RETRY_S)

    def _settled(self, task: asyncio.Task[None]) -> None:
        partition, offset, event_id = self._tasks.pop(task)
        if task.cancelled():
            self._seen.pop(event_id, None)  # not delivered here: deliver it if read again
            return
        error = task.exception()
        if error is not None:  # a bug: leave the offset pending, so readiness reports a stall
            logger.error("delivering %s failed", event_id, exc_info=error)
            return
        self._offsets.finish(partition, offset)
