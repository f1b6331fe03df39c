"""Which batches were asked to cancel, learnt from the batch-status topic.

Whoever asks (``BatchClient.cancel``, the gateway) publishes a ``cancelling`` batch object;
every worker and aggregator follows the whole topic, so each learns of it whichever partitions
it owns. A batch counts as cancelled from its first ``cancelling`` (or ``cancelled``) object
on: a later ``in_progress`` (progress an aggregator published before it saw the cancel) does
not undo a cancel.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import pydantic

from llm_stream.batch.recent_ids import RecentIds
from llm_stream.batch.status import CANCELLED_STATUSES, TERMINAL_STATUSES
from llm_stream.contracts import BatchObject
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Called once per cancelled batch with the first cancelling (or cancelled) object seen.
CancelCallback = Callable[[BatchObject], Awaitable[None]]


class CancelFollower:
    """Follows the batch-status topic and reports each batch the first time it is cancelled."""

    def __init__(
        self,
        settings: Settings,
        on_cancel: CancelCallback,
        on_end: Callable[[BatchObject], None] | None = None,
    ) -> None:
        """``on_end``, if given, is told of every batch object in a terminal status."""
        self._on_cancel = on_cancel
        self._on_end = on_end
        #: The batches seen cancelling or cancelled, the most recent (bounded: not every ever).
        self.cancelled = RecentIds()
        self._follower = TopicFollower(settings, settings.batch_status_topic, self.apply_all)

    def problem(self) -> str | None:
        return self._follower.problem()

    async def run(self) -> None:
        await self._follower.run()

    async def apply_all(self, records: Sequence[IncomingRecord]) -> None:
        for record in records:
            await self.apply(record)

    async def apply(self, record: IncomingRecord) -> None:
        """Take one status record (a record that is not a batch object is skipped)."""
        if record.value is None:
            return
        try:
            batch = BatchObject.model_validate_json(record.value)
        except pydantic.ValidationError:
            logger.debug("skipping a status record that is not a batch object")
            return
        if batch.status in CANCELLED_STATUSES and self.cancelled.add(batch.id):
            await self._on_cancel(batch)
        if batch.status in TERMINAL_STATUSES and self._on_end is not None:
            self._on_end(batch)
