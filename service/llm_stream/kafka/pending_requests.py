"""Whether any request of a batch may still be waiting for a worker: the worker groups' lag on
the requests topics the batch's lines went to.

A worker commits a record only once it is answered (or dead-lettered), so a group whose
committed offsets reach the end of its topics has nothing left to answer there: no result of
those topics will come any more. That is how the aggregator tells a batch whose results were
lost (stalled) from one whose requests are queued behind others or still in the engine.
Anything unknown (a broker that does not answer, a group that never committed) counts as
pending: a stall is reported only when it is certain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from llm_stream.kafka.connection import bounded_consumer_kwargs, client_kwargs, start_client
from llm_stream.kafka.model_topics import model_group, model_requests_topic
from llm_stream.settings import Settings

#: How long one check may take; past it, the requests count as pending.
CHECK_TIMEOUT_S = 10.0


def worker_groups(settings: Settings, models: Collection[str]) -> dict[str, list[str]]:
    """The worker groups that answer a batch of ``models``, and the topics each reads."""
    if not settings.route_by_model or not models:
        return {settings.worker_group_id: [settings.requests_topic]}
    return {
        model_group(settings.worker_group_id, model): [
            settings.requests_topic,
            model_requests_topic(settings.requests_topic, model),
        ]
        for model in models
    }


class PendingRequests:
    """Asks the broker for groups' committed offsets and the topics' ends (one admin client
    and one group-less consumer, made on first use and kept)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def any_pending(self, models: Collection[str]) -> bool:
        """True unless every worker group of ``models`` has committed to the end of its topics."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                return await self._any_pending(worker_groups(self._settings, models))
        except Exception:  # unknown: never a stall on a guess
            await self.close()
            return True

    async def _any_pending(self, groups: dict[str, list[str]]) -> bool:
        admin, consumer = await self._clients()
        for group, topics in groups.items():
            partitions = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                await consumer.topics()  # metadata of topics made since
                return True
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            ends = await consumer.end_offsets(partitions)
            for partition in partitions:
                done = committed.get(partition)
                if ends[partition] > 0 and (done is None or done.offset < ends[partition]):
                    return True
        return False

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            connection = client_kwargs(self._settings)
            admin = AIOKafkaAdminClient(**connection)
            await start_client(admin, connection)
            self._admin = admin
        if self._consumer is None:
            connection = bounded_consumer_kwargs(self._settings)
            consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False)
            await start_client(consumer, connection)
            await consumer.topics()
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        with contextlib.suppress(Exception):
            if admin is not None:
                await admin.close()
        with contextlib.suppress(Exception):
            if consumer is not None:
                await consumer.stop()
