"""Fakes that implement the Protocols (llm_stream.protocols) in memory."""

from __future__ import annotations

from collections.abc import Mapping

from llm_stream.contracts import BatchObject, ResultMessage
from llm_stream.engine.echo import EchoEngine
from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
)
from llm_stream.protocols import MessageTooLargeError


class FakeEngine(EchoEngine):
    """The library's echo engine, remembering what it served, plus a request that triggers a
    bug (prompt ``explode``)."""

    def __init__(
        self,
        delays: Mapping[str, float] | None = None,
        concurrency: int = 4,
        models: tuple[str, ...] = (),
    ) -> None:
        super().__init__(delays, concurrency, keep_requests=True, models=models)

    async def serve(self, request: EngineRequest) -> EngineReply:
        if request.body.get("prompt") == "explode" and not self.dead:
            self.seen.append(request)
            raise ValueError("a bug that only this request triggers")
        return await super().serve(request)


class FakePublisher:
    """Keeps what is published; refuses results over ``max_bytes`` as the Kafka one does."""

    def __init__(self, max_bytes: int = 1_048_576) -> None:
        self.results: list[tuple[ResultMessage, dict[str, str]]] = []
        self.dead_letters: list[tuple[bytes | None, dict[str, str]]] = []
        self.fail = False
        self.max_bytes = max_bytes

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        size = len(result.model_dump_json())
        if size > self.max_bytes:
            raise MessageTooLargeError(size, self.max_bytes)
        self.results.append((result, dict(headers)))

    async def publish_dead_letter(
        self, value: bytes | None, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        self.dead_letters.append((value, dict(headers)))


class FakeStatusPublisher:
    def __init__(self) -> None:
        self.published: list[BatchObject] = []

    async def publish_status(self, batch: BatchObject) -> None:
        self.published.append(batch)
