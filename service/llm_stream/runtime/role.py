"""The skeleton every consuming role shares, so no role writes it again.

A role (the worker, the aggregator, the notifier) subclasses ``Role``, builds its consume loop
as ``loop`` and overrides the hooks it needs; the base owns the rest: the publishing broker,
topic creation, the ops endpoint and the readiness it answers, the stopping event that SIGTERM
and SIGINT set, periodic commits and lag reports, and the order of a clean stop (stop fetching,
drain, commit, close). The gateway has no consume loop: it serves ``ops.server``'s endpoints in
its own HTTP app.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.publishers import build_broker
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops.process import collect_garbage_less_often, mark_interrupted
from llm_stream.ops.server import serving_ops
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)


class Role:
    """A consuming role: its consume loop (``loop``, set by the subclass) and no-op hooks."""

    loop: ConsumeLoop

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = build_broker(settings)
        #: Set it to stop the role (SIGTERM and SIGINT do, with ``stop_on_signals``).
        self.stopping = asyncio.Event()
        #: Metrics of this role's own state; /metrics serves it beside the default registry.
        self.registry = CollectorRegistry()

    def topics(self) -> list[str]:
        """The topics created at start, if missing: the deployment's, and the role's own."""
        return self.settings.topics()

    def watched(self) -> list[Coroutine[Any, Any, Any]]:
        """Work that runs beside the consume loop; its end (or failure) stops the role."""
        return []

    async def check(self) -> str | None:
        """The role's own readiness problem (engine, manifest reader), or None."""
        return None

    async def tick(self) -> None:
        """Called every commit interval, before the commit."""

    async def drain(self) -> bool:
        """After fetching stopped: finish what was taken; True when nothing was left."""
        return True

    @property
    def consumer(self) -> Any:
        return self.loop.consumer

    def stop_on_signals(self) -> None:
        """SIGTERM and SIGINT set ``stopping``: a drain, not a traceback."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._interrupt)

    def _interrupt(self) -> None:
        mark_interrupted()
        self.stopping.set()

    async def readiness(self) -> str | None:
        """None when the role makes progress: broker reachable, the role's own check passes,
        and its consume loop is neither failing nor stalled."""
        if self.stopping.is_set():
            return "stopping"
        if not await self.broker.ping(timeout=2):
            return "broker unreachable"
        problem = await self.check()
        return problem if problem is not None else self.loop.problem()

    async def serve(self) -> bool:
        """Serve until ``stopping`` is set or watched work ends; True when fully drained."""
        settings = self.settings
        collect_garbage_less_often()
        try:
            await ensure_topics(settings, self.topics())
        except BaseException:
            await self.loop.stop()  # never started: closed, so it is not reported unclosed
            raise
        async with (
            self.broker,
            serving_ops(
                settings.ops_host,
                settings.ops_port,
                self.readiness,
                (REGISTRY, self.registry),
                metrics_token=settings.ops_metrics_token,
            ),
        ):
            await self.broker.start()
            await self.loop.start()
            try:
                return await self._until_stopped()
            finally:
                await self.loop.stop()

    async def _until_stopped(self) -> bool:
        consuming = asyncio.create_task(self.loop.run())
        stopping = asyncio.create_task(self.stopping.wait())
        watched = [asyncio.create_task(work) for work in self.watched()]
        housekeeping = asyncio.create_task(self._housekeeping())
        await asyncio.wait({consuming, stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
        self.loop.stop_fetching()
        drained = await self.drain()
        for task in (stopping, housekeeping, *watched):
            task.cancel()
        await asyncio.gather(stopping, housekeeping, *watched, return_exceptions=True)
        await consuming  # returns after its current poll; re-raises a bug in the loop
        for task in watched:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        try:
            await self.loop.commit()
        except Exception as error:  # e.g. a rebalance took the partitions: they are re-read
            logger.warning("final commit failed: %s", error)
        return drained

    async def _housekeeping(self) -> None:
        """Every commit interval: the role's tick, commit, lag gauge and stall gauge."""
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            try:
                await self.tick()
            except Exception:
                logger.exception("periodic check failed")
            await self.loop.commit_or_retry()
            try:
                await self.loop.report_lag()
                self.loop.stalled_partitions()
            except Exception as error:
                logger.warning("lag not reported: %r", error)
