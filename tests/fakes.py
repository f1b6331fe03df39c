"""Fakes that implement the pipeline's Protocols (service/protocols.py) in memory."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping

from llm_stream.contracts import BatchObject, ResponseData, ResultMessage
from llm_stream.engine.error_bodies import unsupported_endpoint
from llm_stream.protocols import (
    EngineReply,
    EngineRequest,
    EngineTimings,
    EngineUnavailableError,
    MessageTooLargeError,
)


class FakeEngine:
    """Echoes the prompt after an optional per-prompt delay; ``/v1/completions`` only."""

    def __init__(self, delays: Mapping[str, float] | None = None) -> None:
        self.delays = dict(delays or {})
        self.seen: list[EngineRequest] = []
        self.running = 0
        self.max_running = 0
        self.dead = False

    async def serve(self, request: EngineRequest) -> EngineReply:
        if self.dead:
            raise EngineUnavailableError("fake engine is dead")
        if request.url != "/v1/completions":
            return EngineReply(unsupported_endpoint(request.url))
        self.seen.append(request)
        if request.body.get("prompt") == "explode":
            raise ValueError("a bug that only this request triggers")
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            prompt = str(request.body.get("prompt", ""))
            await asyncio.sleep(self.delays.get(prompt, 0))
            if prompt.startswith("random:"):  # an answer that does not compress
                prompt = base64.b64encode(os.urandom(int(prompt[7:]))).decode()
            body = {
                "id": f"cmpl-{prompt}",
                "model": request.body.get("model", "fake"),
                "choices": [{"text": prompt.upper(), "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 2},
            }
            response = ResponseData(status_code=200, request_id=f"cmpl-{prompt}", body=body)
            return EngineReply(response, EngineTimings(queue=0.001, time_to_first_token=0.002))
        finally:
            self.running -= 1

    async def check_health(self) -> None:
        if self.dead:
            raise EngineUnavailableError("fake engine is dead")

    async def close(self) -> None:
        self.dead = True

    @property
    def max_concurrency(self) -> int:
        return 4


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
