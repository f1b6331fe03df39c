"""What the gateway asks of the stream behind it, and the Kafka implementation of it.

Batches are never held by the gateway: a created batch is submitted with ``BatchClient`` (its
manifest and request lines), and every batch object is read back from the compacted
batch-status topic through the client's ``BatchStatusView``, which follows every partition. So
any number of gateway replicas answer alike: each reads the same topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pydantic

from llm_stream.client import BatchClient, BatchStatusView, StatusViewStoppedError
from llm_stream.client.publishing import send_status
from llm_stream.contracts import BatchObject
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: How long readiness waits to learn whether the status view still follows its topics.
_VIEW_PROBE_S = 0.05


class BatchStream(Protocol):
    """The stream as the gateway sees it; the tests' fake keeps it in memory."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def retrieve(self, batch_id: str) -> BatchObject | None:
        """The batch's latest object, as of everything published before the call."""
        ...

    async def batches(self) -> list[BatchObject]:
        """Every batch's latest object, newest first (``created_at``, then id, descending)."""
        ...

    async def submit(
        self,
        lines: Iterable[Mapping[str, Any]],
        *,
        batch_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        completion_window: str,
        request_count: int,
    ) -> None:
        """Publish the batch's manifest and its ``request_count`` lines."""
        ...

    async def publish(self, batch: BatchObject) -> None:
        """Publish a batch object the gateway decided itself (a file that failed validation)."""
        ...

    async def cancel(self, batch_id: str) -> BatchObject | None:
        """``BatchClient.cancel``: the ``cancelling`` object, the batch unchanged when it can
        no longer be cancelled, None for no such batch."""
        ...

    async def problem(self) -> str | None:
        """Why the gateway cannot serve now (broker, status view), or None."""
        ...


def newest_first(batches: Iterable[BatchObject]) -> list[BatchObject]:
    return sorted(batches, key=lambda batch: (batch.created_at, batch.id), reverse=True)


class KafkaBatchStream:
    """``BatchStream`` over Kafka: one ``BatchClient`` (producer and status view)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = BatchClient.from_settings(settings)
        #: The sorted list of batches and the view's record count it was built at.
        self._listed: tuple[int, list[BatchObject]] | None = None

    async def start(self) -> None:
        await ensure_topics(self._settings)
        view = await self._client.status_view()
        view.follow_all()
        await view.caught_up()

    async def close(self) -> None:
        await self._client.close()

    async def retrieve(self, batch_id: str) -> BatchObject | None:
        return await self._client.retrieve(batch_id)

    async def batches(self) -> list[BatchObject]:
        view = await self._client.status_view()
        await view.caught_up()
        if self._listed is None or self._listed[0] != view.records_read:
            self._listed = (view.records_read, newest_first(_readable(view)))
        return self._listed[1]

    async def submit(
        self,
        lines: Iterable[Mapping[str, Any]],
        *,
        batch_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        completion_window: str,
        request_count: int,
    ) -> None:
        await self._client.submit(
            lines,
            batch_id=batch_id,
            endpoint=endpoint,
            metadata=metadata,
            completion_window=completion_window,
            request_count=request_count,
        )

    async def publish(self, batch: BatchObject) -> None:
        await send_status(await self._client.producer(), self._client.config, batch)

    async def cancel(self, batch_id: str) -> BatchObject | None:
        return await self._client.cancel(batch_id)

    async def problem(self) -> str | None:
        """Not ready while the view is stopped, or cannot catch up (the broker does not
        answer: the caller bounds the wait)."""
        view = await self._client.status_view()
        try:
            async with asyncio.timeout(_VIEW_PROBE_S):
                await view.changed()  # raises at once when the view no longer follows
        except TimeoutError:
            pass
        except StatusViewStoppedError as error:
            return f"batch status view stopped: {error.__cause__ or error}"
        await view.caught_up()
        return None


def _readable(view: BatchStatusView) -> list[BatchObject]:
    """Every batch the view holds; a record that is not a batch object is left out."""
    batches = []
    for batch_id in view.batch_ids():
        try:
            batch = view.latest(batch_id)
        except pydantic.ValidationError:
            logger.warning("batch %s: its latest status record is not a batch object", batch_id)
            continue
        if batch is not None:
            batches.append(batch)
    return batches
