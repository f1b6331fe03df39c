"""The errors an open batch's owner reported on it (``batch_stalled``, ``model_not_served``),
kept on every later object of the batch until cleared or the batch ends.

The aggregator publishes progress objects as results come in; a batch that stalled may have
its results read again (``aggregator.stalls``), and each such pass publishes progress: without
this, that progress would say the batch has no errors and hide the report.
"""

from __future__ import annotations

from collections.abc import Collection

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.contracts import BatchObject
from llm_stream.protocols import StatusPublisher


class StandingErrors:
    """A ``StatusPublisher`` that puts a batch's held errors on its objects without errors."""

    def __init__(self, inner: StatusPublisher) -> None:
        self._inner = inner
        self._held: dict[str, BatchObject] = {}

    def hold(self, batch: BatchObject) -> None:
        """``batch.errors`` stand on the batch's objects from now on (None: none do)."""
        if batch.errors is None:
            self._held.pop(batch.id, None)
        else:
            self._held[batch.id] = batch

    def keep_only(self, batch_ids: Collection[str]) -> None:
        """Forget the batches not among ``batch_ids`` (written, or owned elsewhere now)."""
        for batch_id in set(self._held) - set(batch_ids):
            del self._held[batch_id]

    async def publish_status(self, batch: BatchObject) -> None:
        held = self._held.get(batch.id)
        if batch.status in TERMINAL_STATUSES:
            self._held.pop(batch.id, None)
        elif held is not None and batch.errors is None:
            batch = batch.model_copy(update={"errors": held.errors})
        await self._inner.publish_status(batch)
