"""A worker tells the others what it serves: an announcement on the workers topic at start
and every heartbeat interval, and a tombstone when it stops (``kafka.live_workers`` reads
them). Readers drop a worker whose heartbeats stop, so a crash needs no tombstone."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from llm_stream.contracts import WorkerAnnouncement
from llm_stream.kafka.connection import client_kwargs, start_client
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Host, process and a random part: unique across restarts and replicas."""
    return f"{socket.gethostname()[:200]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class WorkerAnnouncer:
    """Heartbeats of one worker; ``run`` until cancelled, then ``withdraw``."""

    def __init__(
        self,
        settings: Settings,
        *,
        models: Sequence[str],
        consumer_group: str,
        topics: Sequence[str],
        max_concurrency: int,
        endpoints: Callable[[], Sequence[str] | None] = lambda: None,
    ) -> None:
        """``endpoints``: what the engine serves, asked at each heartbeat (None while its
        engine starts)."""
        self._settings = settings
        self._connection = client_kwargs(settings)
        self._producer: AIOKafkaProducer | None = None
        self.worker_id = new_worker_id()
        self._started_at = time.time()
        self._models = list(models)
        self._consumer_group = consumer_group
        self._topics = list(topics)
        self._max_concurrency = max_concurrency
        self._endpoints = endpoints
        #: Announcements the broker took.
        self.announced = 0

    def announcement(self) -> WorkerAnnouncement:
        return WorkerAnnouncement(
            worker_id=self.worker_id,
            models=self._models,
            consumer_group=self._consumer_group,
            topics=self._topics,
            max_concurrency=self._max_concurrency,
            endpoints=None if (served := self._endpoints()) is None else list(served),
            started_at=self._started_at,
            heartbeat_at=time.time(),
            expires_after_s=self._settings.worker_expiry_s,
        )

    async def run(self) -> None:
        """Announce now and every interval; a failed heartbeat is logged and tried at the next
        (readers count the worker until its last one expires)."""
        while True:
            try:
                await self._send(self.announcement().model_dump_json().encode())
                self.announced += 1
            except Exception as error:
                logger.warning("announcing worker %s failed: %r", self.worker_id, error)
            await asyncio.sleep(self._settings.worker_heartbeat_interval_s)

    async def withdraw(self) -> None:
        """A tombstone for this worker, so readers stop counting it at once; then close."""
        try:
            if self.announced:
                await self._send(None)
        except Exception as error:  # its heartbeats expire instead
            logger.warning("withdrawing worker %s failed: %r", self.worker_id, error)
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()

    async def _send(self, value: bytes | None) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(**self._connection, acks="all")
            try:
                await start_client(producer, self._connection)
            except BaseException:
                await producer.stop()  # closed, so it is not reported unclosed
                raise
            self._producer = producer
        await self._producer.send_and_wait(
            self._settings.workers_topic, value, key=self.worker_id.encode()
        )
