"""What the gateway asks of the stream behind it, and the Kafka implementation of it.

Batches are never held by the gateway: a created batch is submitted with ``BatchClient`` (its
manifest and request lines), and every batch object is read back from the compacted
batch-status topic through the client's ``BatchStatusView``, which follows every partition. So
any number of gateway replicas answer alike: each reads the same topic.

A read asks the broker nothing: it answers from the view once the view is current (it holds
what the broker reported a moment ago, ``BatchStatusView.current``), and after a create or a
cancel the view has read the caller's own records (``reached``), so a caller reads its writes.
Only an id the view does not know (a batch another replica has just created) costs a
ListOffsets request, shared by the callers waiting at the time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from llm_stream.client import BatchClient, BatchStatusView, ClientConfig, StatusViewStoppedError
from llm_stream.client.publishing import send_status
from llm_stream.client.resume import Resumed, resume_batch
from llm_stream.client.status_index import Enqueued
from llm_stream.contracts import BatchObject, ExpiresAfter, WorkerAnnouncement
from llm_stream.files.store import FileStore
from llm_stream.gateway.errors import GatewayError
from llm_stream.kafka.result_scan import ResultScanner, ResultsPage
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops.memory import release_free_heap
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: How long a read waits for the view to be current (or to read the caller's own records)
#: before it is answered 503: the broker does not answer.
_READ_WAIT_S = 10.0
#: How long readiness waits for the view to be current.
_READY_WAIT_S = 2.0


class BatchPage(NamedTuple):
    """Batches newest first, and whether more follow them."""

    batches: list[BatchObject]
    has_more: bool


class BatchStream(Protocol):
    """The stream as the gateway sees it; the tests' fake keeps it in memory."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def retrieve(self, batch_id: str, *, look_further: bool = True) -> BatchObject | None:
        """The batch's latest object, as of a moment ago and of the caller's own writes. An
        id not known yet is looked for up to the broker's end unless ``look_further`` is
        False (a poll of batches already shown)."""
        ...

    async def page(
        self, *, limit: int, after: str | None, project: str | None = None
    ) -> BatchPage | None:
        """Up to ``limit`` batches newest first (``created_at``, then id, descending) after
        the batch ``after`` (from the newest without it); None when ``after`` names none.
        ``project``: that project's batches only (``after`` one of them); None: every one."""
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
        project: str | None = None,
        models: Collection[str] = (),
        input_tokens: Mapping[str, int] | None = None,
        output_expires_after: ExpiresAfter | None = None,
    ) -> None:
        """Publish the batch's manifest and its ``request_count`` lines, of ``project``
        (None: the default project); ``models``: those the lines name; ``input_tokens``:
        their estimated input tokens by model; ``output_expires_after``: its files' expiry."""
        ...

    async def enqueued(self, project: str, model: str) -> Enqueued:
        """``project``'s unfinished batches for ``model`` and their estimated input tokens,
        with every batch published before the call (another replica's too)."""
        ...

    def enqueued_by_project(self) -> list[tuple[str, str, Enqueued]]:
        """``(project, model, enqueued)`` for every pair with unfinished batches, as last
        read (the metrics' gauges)."""
        ...

    async def results_so_far(
        self, batch_id: str, *, created_at: int, after: int | None, limit: int
    ) -> ResultsPage:
        """Up to ``limit`` of the batch's results on the results topic, from the cursor
        ``after`` (None: the first); ``kafka.result_scan`` says how."""
        ...

    async def live_workers(self) -> list[WorkerAnnouncement]:
        """The workers announced now (what ``GET /v1/models`` lists and a batch needs)."""
        ...

    async def publish(self, batch: BatchObject) -> None:
        """Publish a batch object the gateway decided itself (a file that failed validation)."""
        ...

    async def cancel(self, batch_id: str) -> BatchObject | None:
        """``BatchClient.cancel``: the ``cancelling`` object, the batch unchanged when it can
        no longer be cancelled, None for no such batch."""
        ...

    async def resume(self, batch_id: str, store: FileStore) -> Resumed:
        """``client.resume.resume_batch``: publish again the lines with no result; raises
        ``ResumeRefusedError``."""
        ...

    async def problem(self) -> str | None:
        """Why the gateway cannot serve now (broker, status view), or None."""
        ...


class KafkaBatchStream:
    """``BatchStream`` over Kafka: one ``BatchClient`` (producer and status view)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # The caller's key names each batch's project, never the gateway's own settings.
        config = dataclasses.replace(ClientConfig.from_settings(settings), project=None)
        self._client = BatchClient(config)
        self._view: BatchStatusView | None = None
        self._results = ResultScanner(settings)

    async def start(self) -> None:
        await ensure_topics(self._settings)
        view = await self._client.status_view()
        view.follow_all()
        await view.caught_up()
        self._view = view
        release_free_heap()  # what catching up on the history fetched and let go

    async def close(self) -> None:
        self._view = None
        await self._results.close()
        await self._client.close()

    async def retrieve(self, batch_id: str, *, look_further: bool = True) -> BatchObject | None:
        view = await self._current()
        batch = view.latest(batch_id)
        if batch is None and look_further:
            await self._caught_up(view)
            batch = view.latest(batch_id)
        return batch

    async def page(
        self, *, limit: int, after: str | None, project: str | None = None
    ) -> BatchPage | None:
        view = await self._current()
        found = view.newest(limit, after, project)
        if found is None:  # ``after`` names a batch not known yet, or none
            await self._caught_up(view)
            found = view.newest(limit, after, project)
        return None if found is None else BatchPage(*found)

    async def submit(
        self,
        lines: Iterable[Mapping[str, Any]],
        *,
        batch_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        completion_window: str,
        request_count: int,
        project: str | None = None,
        models: Collection[str] = (),
        input_tokens: Mapping[str, int] | None = None,
        output_expires_after: ExpiresAfter | None = None,
    ) -> None:
        await self._client.submit(
            lines,
            batch_id=batch_id,
            endpoint=endpoint,
            metadata=metadata,
            completion_window=completion_window,
            request_count=request_count,
            project=project,
            models=models,
            input_tokens=input_tokens,
            output_expires_after=output_expires_after,
            keep_input=False,  # the upload the batch was created from is its input
        )
        await self._read_own(self._client.published())

    async def enqueued(self, project: str, model: str) -> Enqueued:
        view = await self._current()
        await self._caught_up(view)  # a quota counts what other replicas just created too
        return view.enqueued(project, model)

    def enqueued_by_project(self) -> list[tuple[str, str, Enqueued]]:
        return [] if self._view is None else self._view.enqueued_by_project()

    async def results_so_far(
        self, batch_id: str, *, created_at: int, after: int | None, limit: int
    ) -> ResultsPage:
        try:
            async with asyncio.timeout(_READ_WAIT_S):
                return await self._results.page(
                    batch_id, created_at=created_at, after=after, limit=limit
                )
        except (TimeoutError, KafkaError) as error:
            logger.warning("reading results of %s failed: %r", batch_id, error)
            await self._results.close()  # a fresh consumer for the next page
            raise GatewayError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "The results topic is not readable now (the broker does not answer); try again.",
                type="server_error",
            ) from None

    async def live_workers(self) -> list[WorkerAnnouncement]:
        try:
            live = await self._client.workers().current(_READ_WAIT_S)
        except TimeoutError:
            logger.warning("the workers topic is not readable: answering 503")
            raise GatewayError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "The served models are not readable now (the broker does not answer); try again.",
                type="server_error",
            ) from None
        return live.workers()

    async def publish(self, batch: BatchObject) -> None:
        published = await send_status(await self._client.producer(), self._client.config, batch)
        where = TopicPartition(published.topic, published.partition)
        await self._read_own({where: published.offset})

    async def cancel(self, batch_id: str) -> BatchObject | None:
        batch = await self._client.cancel(batch_id)
        await self._read_own(self._client.published())
        return batch

    async def resume(self, batch_id: str, store: FileStore) -> Resumed:
        return await resume_batch(self._settings, self._client, store, batch_id)

    async def problem(self) -> str | None:
        """Not ready while the view is stopped, or is not current (the broker does not
        answer its fetches, or it is still reading a backlog)."""
        view = await self._client.status_view()
        if (stopped := view.problem()) is not None:
            return stopped
        try:
            async with asyncio.timeout(_READY_WAIT_S):
                await view.current()
        except TimeoutError:
            return f"the batch status view has not been current for {view.lag_s():.1f} s"
        except StatusViewStoppedError:
            return view.problem()
        return None

    async def _current(self) -> BatchStatusView:
        view = await self._client.status_view()
        try:
            async with asyncio.timeout(_READ_WAIT_S):
                await view.current()
        except TimeoutError:
            raise _behind(view) from None
        return view

    async def _caught_up(self, view: BatchStatusView) -> None:
        """The view holds all published before now (a broker request): bounded like a read."""
        try:
            async with asyncio.timeout(_READ_WAIT_S):
                await view.caught_up()
        except (TimeoutError, KafkaError):  # KafkaError: its ListOffsets request failed
            raise _behind(view) from None

    async def _read_own(self, published: Mapping[TopicPartition, int]) -> None:
        view = await self._client.status_view()
        try:
            async with asyncio.timeout(_READ_WAIT_S):
                await view.reached(published)
        except TimeoutError:
            raise _behind(view) from None


def _behind(view: BatchStatusView) -> GatewayError:
    logger.warning("batch status view not current for %.1f s: answering 503", view.lag_s())
    return GatewayError(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The batch status is not readable now (the broker does not answer); try again.",
        type="server_error",
    )
