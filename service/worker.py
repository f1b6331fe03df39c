"""``llm-stream worker``: FastStream consumes requests, the pipeline runs them through vLLM.

FastStream's batch subscriber fetches records across partitions with ``AckPolicy.MANUAL``; the
handler only hands records to the pipeline (waiting for a free in-flight slot), so fetching goes
on while the engine works. Offsets are committed explicitly by the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaMessage

from service.kafka_io import (
    ConsumerCommitter,
    KafkaResultPublisher,
    build_broker,
    incoming,
    manual_commit_batch_subscriber,
    report_consumer_lag,
)
from service.logs import configure_logging
from service.ops_server import serving_ops
from service.pipeline import RequestPipeline
from service.protocols import EngineUnavailableError, InferenceEngine
from service.settings import Settings
from service.telemetry import configure_tracing
from service.topics import ensure_topics

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
            ConsumerCommitter(self),
            max_in_flight=max_in_flight,
            results_topic=settings.results_topic,
            consumer_group=settings.worker_group_id,
        )
        self._subscriber: Any = manual_commit_batch_subscriber(
            self.broker,
            settings,
            settings.requests_topic,
            group_id=settings.worker_group_id,
            max_records=max_in_flight,
            batch_timeout_ms=100,
            release=self.pipeline.release_partitions,
            title="worker:requests",
        )
        self._subscriber(self._on_records)
        self.stopping = asyncio.Event()

    @property
    def consumer(self) -> Any:
        return self._subscriber.consumer

    async def _on_records(self, message: KafkaMessage) -> None:
        for record in message.raw_message:
            if not await self.pipeline.submit(incoming(record)):
                return

    async def readiness(self) -> str | None:
        """None when ready: the broker answers and the engine is alive."""
        if self.stopping.is_set() or self.pipeline.failed.is_set():
            return "stopping"
        if not await self.broker.ping(timeout=2):
            return "broker unreachable"
        try:
            await self.engine.check_health()
        except EngineUnavailableError as error:
            return f"engine unavailable: {error}"
        return None

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
                await self.pipeline.commit()
                await report_consumer_lag(self.consumer, self.settings.worker_group_id)
            except Exception:
                logger.exception("offset commit failed; retrying at the next interval")

    async def run(self) -> int:
        """Consume until ``stopping`` is set or the pipeline fails; return the exit code."""
        await ensure_topics(self.settings)
        settings = self.settings
        async with (
            self.broker,
            serving_ops(settings.ops_host, settings.ops_port, self.readiness),
        ):
            await self.broker.start()
            committer = asyncio.create_task(self._housekeeping())
            failed = asyncio.create_task(self.pipeline.failed.wait())
            stopping = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            logger.info(
                "stopping: no new requests, finishing %d in flight", self.pipeline.in_flight
            )
            self._pause_fetching()
            finished = await self.pipeline.drain(self.settings.drain_timeout_s)
            for task in (committer, failed, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        if self.pipeline.failure is not None:
            return 1
        if not finished:
            logger.warning("drain timed out: unfinished requests will be redelivered")
        return 0

    def _pause_fetching(self) -> None:
        consumer = self.consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())


async def serve_worker(settings: Settings, engine_args: Any) -> int:
    from service.vllm_engine import VllmEngine

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
    from service.worker_args import parse_worker_args

    settings, engine_args = parse_worker_args(argv)
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(settings, "llm-stream-worker")
    return asyncio.run(serve_worker(settings, engine_args))
