"""``llm-stream worker``: a consume loop feeds requests to the pipeline, which runs them
through vLLM and publishes each result.

The loop (``consume_loop``) fetches only as many records as the pipeline has free slots, so
fetching goes on while the engine works and never blocks; offsets are committed by the loop,
up to what the pipeline has finished. Beside it, the worker follows the batch-status topic and
tells the pipeline of every cancelled batch.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from llm_stream.contracts import BatchObject
from llm_stream.engine.protocol import EngineUnavailableError, InferenceEngine
from llm_stream.kafka.cancellations import CancelFollower
from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.publishers import KafkaResultPublisher
from llm_stream.kafka.topics import ensure_topics
from llm_stream.runtime.role import Role
from llm_stream.settings import Settings
from llm_stream.worker.core import RequestPipeline

logger = logging.getLogger(__name__)


def in_flight_limit(settings: Settings, engine: InferenceEngine) -> int:
    """Records the worker keeps started: twice what the engine runs at once, unless set, so
    the engine's scheduler always has the next requests queued."""
    return settings.max_in_flight or 2 * engine.max_concurrency


class WorkerApp(Role):
    """One engine, one consumer-group member, one pipeline."""

    def __init__(self, settings: Settings, engine: InferenceEngine) -> None:
        super().__init__(settings)
        self.engine = engine
        max_in_flight = in_flight_limit(settings, engine)
        self.pipeline = RequestPipeline(
            engine,
            KafkaResultPublisher(self.broker, settings),
            max_in_flight=max_in_flight,
            max_message_bytes=settings.max_message_bytes,
            results_topic=settings.results_topic,
            consumer_group=settings.worker_group_id,
        )
        self.loop = ConsumeLoop(
            settings,
            settings.requests_topic,
            settings.worker_group_id,
            self.pipeline,
            max_records=max_in_flight,
        )
        self.cancels = CancelFollower(settings, self._cancel)

    async def _cancel(self, batch: BatchObject) -> None:
        self.pipeline.cancel_batch(batch.id)

    def watched(self) -> list[Coroutine[Any, Any, Any]]:
        return [self.pipeline.failed.wait(), self.cancels.run()]

    async def check(self) -> str | None:
        if self.pipeline.failed.is_set():
            return "stopping"
        if (problem := self.cancels.problem()) is not None:
            return problem
        try:
            await self.engine.check_health()
        except EngineUnavailableError as error:
            return f"engine unavailable: {error}"
        return None

    async def tick(self) -> None:
        """Stop the worker if its engine died while idle (its requests go to another)."""
        try:
            await self.engine.check_health()
        except EngineUnavailableError as error:
            self.pipeline.fail(error)

    async def drain(self) -> bool:
        logger.info("stopping: no new requests, finishing %d in flight", self.pipeline.in_flight)
        return await self.pipeline.drain(self.settings.drain_timeout_s)

    async def run(self) -> int:
        """Consume until ``stopping`` is set or the pipeline fails; return the exit code."""
        drained = await self.serve()
        if self.pipeline.failure is not None:
            return 1
        if not drained:
            logger.warning("drain timed out: unfinished requests will be redelivered")
        return 0


async def serve_worker(settings: Settings, engine_args: Any) -> int:
    from llm_stream.engine.media_policy import MediaPolicy
    from llm_stream.engine.vllm_engine import VllmEngine

    media = MediaPolicy.from_engine_args(engine_args, fetch_any_host=settings.media_url_fetching)
    await ensure_topics(settings)  # a wrong Kafka address fails now, not after the engine's start
    engine = await VllmEngine.start(engine_args, media=media)
    try:
        worker = WorkerApp(settings, engine)
        worker.stop_on_signals()
        return await worker.run()
    finally:
        await engine.close()
