"""A batch built line by line by an upstream service: ``async with client.batch(...) as batch``.

Lines are published as they are added, so a service never holds a whole batch in memory. The
manifest, which tells the aggregator how many results make the batch whole, goes last and only
when the block ends without an error: a block that fails leaves no batch behind, only lines the
aggregator never completes (it writes them as a failed batch after its orphan timeout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from llm_stream.batch import request_line
from llm_stream.batch.request_line import Problem
from llm_stream.client.config import ClientConfig
from llm_stream.client.handle import BatchHandle
from llm_stream.client.kept_input import InputKeeping, KeptInput
from llm_stream.client.publishing import LineSender, batch_line_headers, send_manifest
from llm_stream.contracts import BatchManifest
from llm_stream.errors import LlmStreamError


class BatchPublisher(Protocol):
    """What a writer needs of its client (``BatchClient``): its producer, its settings and a
    handle to return."""

    config: ClientConfig
    keeping: InputKeeping | None

    async def producer(self) -> AIOKafkaProducer: ...

    def handle(self, batch_id: str) -> BatchHandle: ...


class InvalidLineError(LlmStreamError, ValueError):
    """A line that ``request_line``'s rules refuse; nothing of it was published."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = list(problems)


class EmptyBatchError(LlmStreamError, ValueError):
    """A batch block that ended without a line: no manifest was published."""


class BatchWriter:
    """Adds request lines to one batch and publishes its manifest on a clean exit."""

    def __init__(self, client: BatchPublisher, draft: BatchManifest) -> None:
        self._client = client
        #: The manifest to publish, its ``request_count`` still to be set.
        self._draft = draft
        self._custom_ids: set[str] = set()
        self._sender: LineSender | None = None
        self._handle: BatchHandle | None = None
        #: The first line's model, which the manifest names.
        self._model: str | None = None
        #: The lines as added, kept as the batch's input for ``resume``.
        self._kept: KeptInput | None = None

    @property
    def batch_id(self) -> str:
        return self._draft.batch_id

    @property
    def handle(self) -> BatchHandle:
        """The submitted batch; there is none until the block has ended without an error."""
        if self._handle is None:
            raise RuntimeError(f"batch {self.batch_id} is not submitted: its block has not ended")
        return self._handle

    async def __aenter__(self) -> BatchWriter:
        producer = await self._client.producer()
        self._sender = LineSender(
            producer,
            self._client.config,
            self.batch_id,
            project=self._draft.project,
            headers=batch_line_headers(self._draft),
        )
        if self._client.keeping is not None:
            self._kept = self._client.keeping.copy(self.batch_id, self._draft.project)
        return self

    async def add(self, line: Mapping[str, Any]) -> None:
        """Publish ``line`` (an OpenAI batch input line); InvalidLineError if it breaks a rule,
        a ``custom_id`` used before in this batch included."""
        if self._sender is None or self._handle is not None:
            raise RuntimeError("add lines inside the batch's async with block")
        problems = request_line.check_line(
            line, max_bytes=self._client.config.max_message_bytes, batch_id=self.batch_id
        )
        custom_id = line.get("custom_id")
        if not problems and custom_id in self._custom_ids:
            problems = [request_line.duplicate_problem(str(custom_id))]
        if problems:
            raise InvalidLineError(problems)
        if not self._custom_ids:
            self._model = request_line.line_model(line)
        self._custom_ids.add(str(custom_id))
        if self._kept is not None:
            self._kept.add(line)
        await self._sender.send(line)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._sender is not None, "entered before exit"
        kept, self._kept = self._kept, None
        if exc_type is not None:
            if kept is not None:
                kept.discard()
            await self._sender.abandon()
            return
        count = await self._sender.flush()
        if kept is not None:
            if count:
                await kept.keep()  # before the manifest: a batch is resumable once it exists
            else:
                kept.discard()
        if count == 0:
            raise EmptyBatchError(f"batch {self.batch_id} has no lines: no manifest was published")
        manifest = BatchManifest.model_validate(
            {**self._draft.model_dump(), "request_count": count, "model": self._model}
        )
        await send_manifest(await self._client.producer(), self._client.config, manifest)
        self._handle = self._client.handle(self.batch_id)
