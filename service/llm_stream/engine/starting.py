"""An engine still starting, as an ``InferenceEngine``: requests wait for it.

A worker built on one joins its consumer group and takes its first records while vLLM loads,
so run-batch's group join (a second on the embedded broker) costs nothing beside vLLM's own
start. If the start fails, every request and health check says the engine is unavailable (the
worker stops, nothing is answered in its name), and ``failure`` holds the start's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
    EngineUnavailableError,
    InferenceEngine,
)


class StartingEngine:
    """Implements ``InferenceEngine`` over an engine whose start is under way."""

    def __init__(
        self,
        starting: Awaitable[InferenceEngine],
        max_concurrency: int,
        served_models: tuple[str, ...],
    ) -> None:
        """``max_concurrency`` and ``served_models``: the engine's, known from its
        configuration before it loads."""
        self._starting = asyncio.ensure_future(starting)
        self._max_concurrency = max_concurrency
        self._served_models = served_models

    @property
    def served_models(self) -> tuple[str, ...]:
        return self._served_models

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    @property
    def served_endpoints(self) -> tuple[str, ...] | None:
        """Known once the engine has started (vLLM decides them from the loaded model)."""
        if not self._starting.done() or self.failure is not None or self._starting.cancelled():
            return None
        return self._starting.result().served_endpoints

    @property
    def failure(self) -> BaseException | None:
        """Why the start failed; None while it runs or once it succeeded."""
        if not self._starting.done() or self._starting.cancelled():
            return None
        return self._starting.exception()

    async def started(self) -> InferenceEngine:
        """The engine, once started; EngineUnavailableError if its start failed."""
        try:
            return await asyncio.shield(self._starting)
        except Exception as error:
            raise EngineUnavailableError(f"the engine failed to start: {error}") from error

    async def serve(self, request: EngineRequest) -> EngineReply:
        return await (await self.started()).serve(request)

    async def check_health(self) -> None:
        """Healthy while starting (it is not dead); then the engine's own answer."""
        if self._starting.done():
            await (await self.started()).check_health()

    async def close(self) -> None:
        """Close the engine, waiting for its start to end if it has not (a thread loading
        vLLM cannot be stopped; a start that failed has nothing to close)."""
        try:
            engine = await self.started()
        except EngineUnavailableError:
            return
        await engine.close()
