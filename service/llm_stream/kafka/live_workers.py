"""Which workers are live and what they serve, read from the workers topic.

Workers announce themselves every few seconds (``worker.announcer``); a reader keeps the
latest announcement per worker and counts it while it is fresh, so a worker that died without
a word stops counting ``expires_after_s`` after its last heartbeat. The state holds live
workers only: an expired or withdrawn one is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from llm_stream.contracts import WorkerAnnouncement
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)


class LiveWorkers:
    """The latest announcement of each worker heard from lately."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._workers: dict[bytes, WorkerAnnouncement] = {}
        #: Records on the workers topic that were not announcements (each logged once).
        self.unreadable = 0

    def add(self, records: Sequence[IncomingRecord]) -> None:
        """Take a fetch's records: an announcement replaces its worker's last, a tombstone
        withdraws it, anything else is counted and skipped."""
        for record in records:
            key = record.key or b""
            if record.value is None:
                self._workers.pop(key, None)
                continue
            try:
                announcement = WorkerAnnouncement.model_validate_json(record.value)
            except pydantic.ValidationError:
                self.unreadable += 1
                logger.warning(
                    "skipping record %d@%d of %s: not a worker announcement",
                    record.partition,
                    record.offset,
                    record.topic,
                )
                continue
            self._workers[key] = announcement
        self._forget_expired()

    def workers(self) -> list[WorkerAnnouncement]:
        """Every live worker."""
        self._forget_expired()
        return list(self._workers.values())

    def models(self) -> dict[str, list[WorkerAnnouncement]]:
        """Each model served now, with its live workers."""
        served: dict[str, list[WorkerAnnouncement]] = {}
        for worker in self.workers():
            for model in worker.models:
                served.setdefault(model, []).append(worker)
        return served

    def serves(self, model: str) -> bool:
        return any(model in worker.models for worker in self.workers())

    def _forget_expired(self) -> None:
        now = self._clock()
        expired = [
            key
            for key, worker in self._workers.items()
            if worker.heartbeat_at + worker.expires_after_s < now
        ]
        for key in expired:
            del self._workers[key]


class WorkerDirectory:
    """``LiveWorkers`` kept current in the background, for a process without a consume loop
    of its own (the gateway, a client that submits)."""

    def __init__(self, connection: Settings | Mapping[str, Any], workers_topic: str) -> None:
        """``connection``: as ``TopicFollower`` takes it."""
        self.live = LiveWorkers()
        self._follower = TopicFollower(connection, workers_topic, self._add)
        self._task: asyncio.Task[None] | None = None

    async def _add(self, records: Sequence[IncomingRecord]) -> None:
        self.live.add(records)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follower.run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def problem(self) -> str | None:
        return self._follower.problem()

    async def current(self, timeout: float) -> LiveWorkers:  # noqa: ASYNC109
        """The live workers once the topic's history is read; a topic nobody created yet
        holds none. Raises TimeoutError when the broker does not answer in time."""
        self.start()
        async with asyncio.timeout(timeout):
            await self._follower.settled.wait()
        return self.live
