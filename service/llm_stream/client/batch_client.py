"""``BatchClient``: submit OpenAI batches to Kafka and read their status, from any service.

Modelled on arq's client: ``submit`` returns a ``BatchHandle`` as ``enqueue_job`` returns a
``Job``. The client owns one producer and one ``BatchStatusView``, each started on first use,
so a reader never opens a producer and a submitter never follows the status topic.

The client publishes; it does not create topics (a deployment, the worker or the aggregator
does: ``kafka.topics.ensure_topics``), nor validate a whole input file
(``batch.input_file``: the CLI's job before ``submit``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Collection, Iterable, Mapping
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from llm_stream.batch.objects import cancelling
from llm_stream.batch.request_line import line_model
from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus, can_transition
from llm_stream.batch.token_estimate import count_input_tokens
from llm_stream.client.config import ClientConfig
from llm_stream.client.handle import BatchHandle
from llm_stream.client.kept_input import InputKeeping
from llm_stream.client.manifests import build_manifest, new_batch_id
from llm_stream.client.publishing import (
    LineSender,
    OnPublished,
    batch_line_headers,
    line_topic,
    new_producer,
    send_manifest,
    send_status,
    single_request_headers,
)
from llm_stream.client.request_reply import (
    ReplyListener,
    ask,
    ensure_reply_topic,
    single_request,
)
from llm_stream.client.served_models import ServedModels
from llm_stream.client.status_view import BatchStatusView
from llm_stream.client.writer import BatchWriter
from llm_stream.contracts import (
    PRIORITY_HEADER,
    BatchObject,
    ExpiresAfter,
    ResponseData,
    is_safe_batch_id,
)
from llm_stream.errors import LlmStreamError
from llm_stream.kafka.connection import start_client
from llm_stream.kafka.live_workers import WorkerDirectory
from llm_stream.ops import telemetry
from llm_stream.settings import Settings


class SubmitError(LlmStreamError, RuntimeError):
    """The lines published differ from the count the manifest announced."""


class BatchClient:
    """Submits batches and reads their batch objects; use it as an async context manager."""

    def __init__(self, config: ClientConfig, keeping: InputKeeping | None = None) -> None:
        """``keeping``: where the batches' lines are kept for ``resume`` (None: nowhere)."""
        self.config = config
        self.keeping = keeping
        self._producer: AIOKafkaProducer | None = None
        self._served: ServedModels | None = None
        self._workers: WorkerDirectory | None = None
        self._view: BatchStatusView | None = None
        self._replies: ReplyListener | None = None
        self._starting = asyncio.Lock()
        #: Offset of the latest manifest or batch object this client published, per partition.
        self._published: dict[TopicPartition, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchClient:
        """A client of the deployment ``settings`` describe: its connection and topics, and,
        unless ``SUBMIT_KEEP_INPUT=false``, its file store for the inputs of the batches."""
        keeping = None
        if settings.submit_keep_input:
            from llm_stream.files.opening import open_store

            keeping = InputKeeping(
                functools.partial(open_store, settings), settings.files_input_expires_after_s
            )
        return cls(ClientConfig.from_settings(settings), keeping)

    async def __aenter__(self) -> BatchClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop following statuses and workers, and flush and stop the producer."""
        view, producer, self._view, self._producer = self._view, self._producer, None, None
        workers, self._workers, self._served = self._workers, None, None
        replies, self._replies = self._replies, None
        if replies is not None:
            await replies.stop()
        if workers is not None:
            await workers.close()
        if view is not None:
            await view.stop()
        if producer is not None:
            await producer.stop()

    async def producer(self) -> AIOKafkaProducer:
        """The client's producer, started on first use."""
        async with self._starting:
            if self._producer is None:
                producer = new_producer(self.config)
                await start_client(producer, self.config.connection)
                self._producer = producer
            return self._producer

    async def ask(
        self,
        body: Mapping[str, Any],
        *,
        endpoint: str = "/v1/chat/completions",
        timeout: float = 60.0,  # noqa: ASYNC109
        custom_id: str | None = None,
        key: bytes | None = None,
        priority: int | None = None,
        deadline: float | None = None,
    ) -> ResponseData:
        """Send one request (no batch) and wait for its reply on ``config.reply_topic``: the
        HTTP response vLLM's server would give (check ``status_code``). Raises
        ``ReplyTimeoutError`` after ``timeout`` s; ``key``: the request's record key, which
        its reply keeps; ``priority`` (lower is sooner) and ``deadline`` (Unix seconds; past
        it the reply is a ``request_expired`` error) as ``batch.priority`` and
        ``batch.deadlines`` read them."""
        line = single_request(body, endpoint, custom_id)
        producer = await self.producer()
        async with self._starting:
            if self._replies is None:
                config = self.config
                await ensure_reply_topic(
                    config.connection,
                    config.reply_topic,
                    config.topic_partitions,
                    config.topic_replication_factor,
                )
                listener = ReplyListener(
                    config.connection, config.reply_topic, config.fetch_max_wait_ms
                )
                await listener.start()
                self._replies = listener
        return await ask(
            producer,
            self._replies,
            line_topic(self.config, line),
            line,
            key=key,
            timeout=timeout,
            headers=single_request_headers(
                priority=priority, deadline=deadline, project=self.config.project
            ),
        )

    async def status_view(self) -> BatchStatusView:
        """The client's view of batch objects, started on first use."""
        async with self._starting:
            if self._view is None:
                view = BatchStatusView(self.config)
                await view.start()
                self._view = view
            return self._view

    async def served_models(self) -> ServedModels | None:
        """What live workers serve, followed from first use; None unless routing by model."""
        if not self.config.route_by_model:
            return None
        if self._served is None:
            self._served = ServedModels(self.workers())
        return self._served

    def workers(self) -> WorkerDirectory:
        """The live workers, followed from the first read (``WorkerDirectory.current``)."""
        if self._workers is None:
            self._workers = WorkerDirectory(self.config.connection, self.config.workers_topic)
        return self._workers

    def handle(self, batch_id: str) -> BatchHandle:
        """A handle on a batch submitted before (by any client), as arq's ``Job(job_id)``."""
        return BatchHandle(batch_id, self)

    async def submit(
        self,
        lines: Iterable[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        endpoint: str,
        metadata: Mapping[str, str] | None = None,
        completion_window: str = "24h",
        request_count: int | None = None,
        on_published: OnPublished | None = None,
        project: str | None = None,
        models: Collection[str] | None = None,
        input_tokens: Mapping[str, int] | None = None,
        priority: int | None = None,
        output_expires_after: ExpiresAfter | None = None,
        keep_input: bool = True,
    ) -> BatchHandle:
        """Publish the manifest, then every line; return once the broker holds them all.

        ``keep_input``: copy the lines into the client's file store as the batch's input,
        where ``resume`` reads them (False: the caller kept the batch's input file itself).

        ``models``: every model the lines name, when known (a checked file), else the first
        line's is taken. Routing by model, a model no live worker serves raises
        ``ModelNotServedError``: those named up front before anything is published, another
        met in a streamed line before that line is sent.

        ``project``: the batch's (default: the config's, else the default project), carried
        by the manifest and by each line's ``llm-stream-project`` header.

        ``input_tokens``: the lines' estimated input tokens by model (what enqueued-token quotas
        count); counted here when ``lines`` is a collection, else unknown unless given.

        ``priority``: the lines' (lower is sooner; kept in the metadata as
        ``llm-stream-priority``, where a batch created over HTTP names it). Each line also
        carries the batch's deadline: a line not run when the completion window ends is
        answered ``batch_expired``.

        ``output_expires_after``: when the batch's output and error files expire once written
        (OpenAI's policy; None: the deployment's default).

        ``request_count`` is the number of ``lines`` when they come from a one-pass iterator
        (a file streamed); without it, ``lines`` is counted (an iterator is read into memory).
        ``on_published(n)`` is called as the broker confirms each window of ``n`` lines.
        """
        if priority is not None:
            metadata = {**(metadata or {}), PRIORITY_HEADER: str(priority)}
        if request_count is None:
            if not isinstance(lines, Collection):
                lines = list(lines)
            request_count = len(lines)
        if input_tokens is None and isinstance(lines, Collection):
            input_tokens = count_input_tokens(lines)
        remaining = iter(lines)
        first = next(remaining, None)  # the manifest goes first and names the first's model
        lines = remaining if first is None else itertools.chain([first], remaining)
        if models is None:
            models = [model] if (model := line_model(first)) is not None else []
        served = await self.served_models()
        if served is not None:
            await served.require(models)
        manifest = build_manifest(
            batch_id or new_batch_id(),
            endpoint=endpoint,
            request_count=request_count,
            metadata=metadata,
            completion_window=completion_window,
            model=line_model(first),
            max_completion_window_s=self.config.max_completion_window_s,
            project=project if project is not None else self.config.project,
            models=models,
            input_tokens=input_tokens,
            output_expires_after=output_expires_after,
        )
        producer = await self.producer()
        with telemetry.tracer().start_as_current_span(
            f"submit {manifest.batch_id}", attributes={"llm_stream.batch_id": manifest.batch_id}
        ):
            self._note(await send_manifest(producer, self.config, manifest))
            sender = LineSender(
                producer,
                self.config,
                manifest.batch_id,
                on_published,
                project=manifest.project,
                served=served,
                headers=batch_line_headers(manifest),
            )
            kept = (
                self.keeping.copy(manifest.batch_id, manifest.project)
                if keep_input and self.keeping is not None
                else None
            )
            try:
                for line in lines:
                    if kept is not None:
                        kept.add(line)
                    await sender.send(line)
                published = await sender.flush()
            except BaseException:
                if kept is not None:
                    kept.discard()
                await sender.abandon()
                raise
            if kept is not None:
                await kept.keep()
        if published != request_count:
            raise SubmitError(
                f"batch {manifest.batch_id}: the manifest announced {request_count} lines, "
                f"{published} were published"
            )
        return self.handle(manifest.batch_id)

    def batch(
        self,
        *,
        endpoint: str,
        batch_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        completion_window: str = "24h",
    ) -> BatchWriter:
        """A batch to fill line by line: ``async with client.batch(...) as batch: await
        batch.add(line)``; ``batch.handle`` after the block. Bad settings raise here."""
        draft = build_manifest(
            batch_id or new_batch_id(),
            endpoint=endpoint,
            request_count=1,
            metadata=metadata,
            completion_window=completion_window,
            max_completion_window_s=self.config.max_completion_window_s,
            project=self.config.project,
        )
        return BatchWriter(self, draft)

    async def retrieve(self, batch_id: str) -> BatchObject | None:
        """The batch's latest batch object, as of everything published before this call;
        ``validating`` when only its manifest is there, None when nothing is.

        Raises pydantic's ValidationError when the latest record is not a batch object.
        """
        view = await self.status_view()
        view.watch(batch_id)
        await view.caught_up()
        return view.latest(batch_id)

    async def cancel(self, batch_id: str) -> BatchObject | None:
        """Ask every worker to stop the batch: publish its ``cancelling`` object and return it.

        None for a batch nobody announced (an unsafe id included). A batch the status machine
        does not let cancel (already cancelling, or finished) is returned as it is, and nothing
        is published. Workers answer its requests not yet run with ``batch_cancelled`` error
        lines and abort those running; the aggregator then writes it as ``cancelled``.
        """
        if not is_safe_batch_id(batch_id):
            return None
        batch = await self.retrieve(batch_id)
        if batch is None or not can_transition(batch.status, BatchStatus.CANCELLING):
            return batch
        asked = cancelling(batch, at=int(time.time()))
        self._note(await send_status(await self.producer(), self.config, asked))
        return asked

    def published(self) -> dict[TopicPartition, int]:
        """Where the latest manifest (``submit``) and batch object (``cancel``) this client
        published lie, per partition: ``BatchStatusView.reached`` of them is read-your-writes."""
        return dict(self._published)

    def _note(self, published: RecordMetadata) -> None:
        tp = TopicPartition(published.topic, published.partition)
        self._published[tp] = max(published.offset, self._published.get(tp, -1))

    async def wait(self, batch_id: str, timeout: float) -> BatchObject | None:  # noqa: ASYNC109
        """The batch object as soon as it is final (completed, failed, expired or cancelled);
        after ``timeout`` seconds, the latest one (None if the batch never appeared)."""
        deadline = asyncio.get_running_loop().time() + timeout
        batch = await self.retrieve(batch_id)
        view = await self.status_view()
        while batch is None or batch.status not in TERMINAL_STATUSES:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    await view.changed()
            except TimeoutError:
                pass
            batch = view.latest(batch_id)
        return batch
