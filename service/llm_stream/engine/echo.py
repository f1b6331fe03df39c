"""An engine with no model: it echoes, so the service can run without vLLM.

Shipped in the library as httpx ships its mock transport: tests, benchmarks of the service's
own overhead per message, and a first try of the pipeline on a laptop all need an engine that
answers instantly and predictably. Completions echo the prompt upper-cased; chat completions
echo the last message; other endpoints are not served (404, as for a model without the task).
Given model names, it answers only those (404 for another, as vLLM's server does); without,
any model.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Mapping
from typing import Any

from llm_stream.batch.error_bodies import (
    endpoint_not_served,
    model_not_found,
    unsupported_endpoint,
)
from llm_stream.contracts import SUPPORTED_ENDPOINTS, ResponseData
from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
    EngineTimings,
    EngineUnavailableError,
)

#: What the echo engine answers; any other endpoint is a 404, as for a model without the task.
ECHO_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
#: A prompt ``random:N`` is answered with N random bytes (base64): an answer that does not
#: compress, for exercising the message size limit.
RANDOM_PREFIX = "random:"


class EchoEngine:
    """Implements ``InferenceEngine``; ``delays`` maps a prompt to seconds to wait first.

    ``latency_s``: every request is held that long (plus its ``delays``), as an engine busy
    generating would hold it: a worker keeping ``max_in_flight`` requests in the engine then
    answers at most ``max_in_flight / latency_s`` a second however fast its host, so a
    benchmark of several workers measures how the work spreads, not the machine's cores.

    ``keep_requests``: remember every request served in ``seen`` (tests read it); off, memory
    stays flat however many requests pass.
    """

    def __init__(
        self,
        delays: Mapping[str, float] | None = None,
        concurrency: int = 4,
        *,
        keep_requests: bool = False,
        models: tuple[str, ...] = (),
        latency_s: float = 0.0,
    ) -> None:
        self.delays = dict(delays or {})
        self.latency_s = latency_s
        self.seen: list[EngineRequest] = []
        self._keep_requests = keep_requests
        self.running = 0
        self.max_running = 0
        self.dead = False
        self._concurrency = concurrency
        self._models = models

    async def serve(self, request: EngineRequest) -> EngineReply:
        if self.dead:
            raise EngineUnavailableError("echo engine is closed")
        if request.url not in ECHO_ENDPOINTS:
            if request.url in SUPPORTED_ENDPOINTS:
                return EngineReply(endpoint_not_served(request.url))
            return EngineReply(unsupported_endpoint(request.url))
        model = request.body.get("model")
        if self._models and model is not None and model not in self._models:
            return EngineReply(model_not_found(str(model), self._models))
        if self._keep_requests:
            self.seen.append(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            prompt = _prompt(request.body)
            await asyncio.sleep(self.latency_s + self.delays.get(prompt, 0))
            if prompt.startswith(RANDOM_PREFIX):
                prompt = base64.b64encode(os.urandom(int(prompt[len(RANDOM_PREFIX) :]))).decode()
            body = _completion(request, prompt)
            response = ResponseData(status_code=200, request_id=str(body["id"]), body=body)
            return EngineReply(response, EngineTimings(queue=0.001, time_to_first_token=0.002))
        finally:
            self.running -= 1

    async def check_health(self) -> None:
        if self.dead:
            raise EngineUnavailableError("echo engine is closed")

    async def close(self) -> None:
        self.dead = True

    @property
    def max_concurrency(self) -> int:
        return self._concurrency

    @property
    def served_models(self) -> tuple[str, ...]:
        return self._models or ("echo",)

    @property
    def served_endpoints(self) -> tuple[str, ...]:
        return ECHO_ENDPOINTS


def _prompt(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return str(messages[-1].get("content", ""))
    return str(body.get("prompt", ""))


def _completion(request: EngineRequest, prompt: str) -> dict[str, Any]:
    usage = {"prompt_tokens": len(prompt), "completion_tokens": 2, "total_tokens": len(prompt) + 2}
    model = request.body.get("model", "echo")
    if request.url == "/v1/chat/completions":
        message = {"role": "assistant", "content": prompt.upper()}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": usage,
        }
    return {
        "id": f"cmpl-{prompt}" if len(prompt) <= 64 else f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "model": model,
        "choices": [{"index": 0, "text": prompt.upper(), "finish_reason": "length"}],
        "usage": usage,
    }
