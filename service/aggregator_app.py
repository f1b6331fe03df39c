"""``llm-stream aggregator``: results and manifests from Kafka into OpenAI batch files.

Results come through a FastStream batch subscriber (consumer group, manual commits of what the
aggregator says is safe); manifests are small and every aggregator reads all of them, from the
start, so whichever instance owns a batch's results partition knows its size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaMessage

from service.aggregator import BatchAggregator
from service.contracts import BatchManifest
from service.kafka_io import (
    ConsumerCommitter,
    KafkaStatusPublisher,
    build_broker,
    incoming,
    manual_commit_batch_subscriber,
    report_consumer_lag,
)
from service.logs import configure_logging
from service.ops_server import serving_ops
from service.settings import Settings
from service.telemetry import configure_tracing
from service.topics import ensure_topics

logger = logging.getLogger(__name__)


class AggregatorApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = build_broker(settings)
        self.aggregator = BatchAggregator(
            settings.output_dir,
            KafkaStatusPublisher(self.broker, settings),
            trace_link_limit=settings.trace_link_limit,
        )
        self._committer = ConsumerCommitter(self)
        self._committed: dict[tuple[str, int], int] = {}
        self._subscriber: Any = manual_commit_batch_subscriber(
            self.broker,
            settings,
            settings.results_topic,
            group_id=settings.aggregator_group_id,
            max_records=1000,
            batch_timeout_ms=200,
            release=self._release,
            title="aggregator:results",
        )
        self._subscriber(self._on_results)
        self.stopping = asyncio.Event()
        self._manifest_reader: asyncio.Task[None] | None = None

    @property
    def consumer(self) -> Any:
        return self._subscriber.consumer

    async def _release(self, partitions: list[tuple[str, int]]) -> None:
        """Before a rebalance: commit what is safe, then drop the partitions' open batches."""
        with contextlib.suppress(Exception):
            await self.commit()
        self.aggregator.release(partitions)

    async def _on_results(self, message: KafkaMessage) -> None:
        await self.aggregator.add_results([incoming(r) for r in message.raw_message])
        await self.commit()
        await report_consumer_lag(self.consumer, self.settings.aggregator_group_id)

    async def readiness(self) -> str | None:
        if not await self.broker.ping(timeout=2):
            return "broker unreachable"
        if self._manifest_reader is None or self._manifest_reader.done():
            return "manifest reader not running"
        if self.stopping.is_set():
            return "stopping"
        return None

    async def commit(self) -> None:
        offsets = {
            partition: offset
            for partition, offset in self.aggregator.committable().items()
            if self._committed.get(partition) != offset
        }
        if offsets:
            await self._committer.commit(offsets)
            self._committed.update(offsets)

    async def read_manifests(self) -> None:
        """Follow every partition of the batches topic from the beginning, forever."""
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_kwargs(), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.settings.batches_topic)
            if not partitions:
                await consumer.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.settings.batches_topic) or set()
            assigned = [TopicPartition(self.settings.batches_topic, p) for p in partitions]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for records in batches.values():
                    for record in records:
                        await self._add_manifest(record)
        finally:
            await consumer.stop()

    async def _add_manifest(self, record: Any) -> None:
        try:
            manifest = BatchManifest.model_validate_json(record.value or b"")
        except pydantic.ValidationError as error:
            logger.warning("skipping invalid manifest at offset %d: %s", record.offset, error)
            return
        await self.aggregator.add_manifest(manifest)

    async def _expire_periodically(self, interval: float = 30.0) -> None:
        """Close batches whose completion window passed (their commits stop being held), but
        only once this aggregator has read its partitions to the end: after downtime, a
        batch's results may be waiting in the topic, unread."""
        while True:
            await asyncio.sleep(interval)
            if await self._caught_up():
                for batch_id in await self.aggregator.expire_overdue():
                    logger.warning("batch %s expired before all its results arrived", batch_id)
                await self.commit()

    async def _caught_up(self) -> bool:
        consumer = self.consumer
        if consumer is None or not consumer.assignment():
            return False
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None or await consumer.position(partition) < highwater:
                return False
        return True

    async def run(self) -> int:
        await ensure_topics(self.settings)
        manifests = self._manifest_reader = asyncio.create_task(self.read_manifests())
        settings = self.settings
        try:
            async with (
                self.broker,
                serving_ops(settings.ops_host, settings.ops_port, self.readiness),
            ):
                await self.broker.start()
                stopping = asyncio.create_task(self.stopping.wait())
                expiring = asyncio.create_task(self._expire_periodically())
                await asyncio.wait(
                    {manifests, stopping, expiring}, return_when=asyncio.FIRST_COMPLETED
                )
                stopping.cancel()
                expiring.cancel()
                if expiring.done() and not expiring.cancelled():
                    expiring.result()
                if manifests.done():
                    manifests.result()  # re-raise why the manifest reader stopped
                with contextlib.suppress(Exception):
                    await self.commit()
        finally:
            manifests.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await manifests
            self.aggregator.close()
        return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    parser.add_argument("--output-dir", type=Path, help="where batch files are written")
    parser.add_argument("--group-id", dest="aggregator_group_id", help="consumer group")
    parser.add_argument(
        "--ops-port", type=int, help="port of /metrics, /healthz and /readyz (default: none)"
    )


async def serve_aggregator(settings: Settings) -> int:
    app = AggregatorApp(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.stopping.set)
    return await app.run()


def main(args: argparse.Namespace) -> int:
    settings = Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers,
        output_dir=args.output_dir,
        aggregator_group_id=args.aggregator_group_id,
        ops_port=args.ops_port,
    )
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(settings, "llm-stream-aggregator")
    return asyncio.run(serve_aggregator(settings))
