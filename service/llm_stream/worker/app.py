"""``llm-stream worker``: a consume loop feeds requests to the pipeline, which runs them
through vLLM and publishes each result.

The loop (``consume_loop``) fetches only as many records as the pipeline has free slots, so
fetching goes on while the engine works and never blocks; offsets are committed by the loop,
up to what the pipeline has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.publishers import KafkaResultPublisher, build_broker
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops.logs import configure_logging
from llm_stream.ops.server import serving_ops
from llm_stream.ops.telemetry import configure_tracing
from llm_stream.protocols import EngineUnavailableError, InferenceEngine
from llm_stream.settings import Settings
from llm_stream.worker.core import RequestPipeline

logger = logging.getLogger(__name__)


class Worker:
    """One engine, one consumer-group member, one pipeline."""

    def __init__(self, settings: Settings, engine: InferenceEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = build_broker(settings)
        max_in_flight = settings.max_in_flight or 2 * engine.max_concurrency
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
        self.stopping = asyncio.Event()

    @property
    def consumer(self) -> Any:
        return self.loop.consumer

    async def readiness(self) -> str | None:
        """None when ready: the broker answers, the engine is alive and requests move."""
        if self.stopping.is_set() or self.pipeline.failed.is_set():
            return "stopping"
        if not await self.broker.ping(timeout=2):
            return "broker unreachable"
        try:
            await self.engine.check_health()
        except EngineUnavailableError as error:
            return f"engine unavailable: {error}"
        return self.loop.problem()

    async def _housekeeping(self) -> None:
        """Every commit interval: commit finished offsets, refresh the lag gauge, and stop the
        worker if the engine died while idle (its requests then go to another worker)."""
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            try:
                await self.engine.check_health()
            except EngineUnavailableError as error:
                self.pipeline.fail(error)
            try:
                await self.loop.commit()
                await self.loop.report_lag()
                self.loop.stalled_partitions()
            except Exception as error:
                logger.warning("offset commit failed, retrying at the next interval: %s", error)

    async def run(self) -> int:
        """Consume until ``stopping`` is set or the pipeline fails; return the exit code."""
        await ensure_topics(self.settings)
        settings = self.settings
        async with (
            self.broker,
            serving_ops(settings.ops_host, settings.ops_port, self.readiness),
        ):
            await self.broker.start()
            await self.loop.start()
            try:
                finished = await self._consume_until_stopped()
            finally:
                await self.loop.stop()
        if self.pipeline.failure is not None:
            return 1
        if not finished:
            logger.warning("drain timed out: unfinished requests will be redelivered")
        return 0

    async def _consume_until_stopped(self) -> bool:
        consuming = asyncio.create_task(self.loop.run())
        housekeeping = asyncio.create_task(self._housekeeping())
        failed = asyncio.create_task(self.pipeline.failed.wait())
        stopping = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({failed, stopping, consuming}, return_when=asyncio.FIRST_COMPLETED)
        logger.info("stopping: no new requests, finishing %d in flight", self.pipeline.in_flight)
        self.loop.stop_fetching()
        finished = await self.pipeline.drain(self.settings.drain_timeout_s)
        for task in (housekeeping, failed, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await housekeeping
        await consuming  # returns after its current poll; re-raises a bug in the loop
        try:
            await self.loop.commit()
        except Exception as error:  # e.g. a rebalance took the partitions: they are re-read
            logger.warning("final commit failed: %s", error)
        return finished


async def serve_worker(settings: Settings, engine_args: Any) -> int:
    from llm_stream.engine.vllm_engine import VllmEngine

    engine = await VllmEngine.start(engine_args)
    try:
        worker = Worker(settings, engine)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stopping.set)
        return await worker.run()
    finally:
        await engine.close()


def main(argv: Sequence[str]) -> int:
    from llm_stream.worker.args import parse_worker_args

    settings, engine_args = parse_worker_args(argv)
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(settings, "llm-stream-worker")
    return asyncio.run(serve_worker(settings, engine_args))
