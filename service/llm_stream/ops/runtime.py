"""The skeleton every consuming role shares, so no role writes it again.

A role with a consume loop (the worker, the aggregator) brings that loop and a few hooks;
the runtime owns the rest: the publishing broker, topic creation, the ops endpoint and the
readiness it answers, the stopping event that SIGTERM and SIGINT set, periodic commits and lag
reports, and the order of a clean stop (stop fetching, drain, commit, close). The gateway has
no consume loop: it serves ``ops.server``'s endpoints in its own HTTP app.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import Coroutine
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry

from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.publishers import build_broker
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops.logs import configure_logging
from llm_stream.ops.server import serving_ops
from llm_stream.ops.telemetry import configure_tracing
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Set when Ctrl-C (SIGINT) stopped a role of this process: after its clean stop, the command
#: exits 130 as an interrupted one does (SIGTERM, an orchestrator's stop, exits 0).
_INTERRUPTED = threading.Event()


def interrupted() -> bool:
    """Whether Ctrl-C stopped a role of this process (a signal is the process's)."""
    return _INTERRUPTED.is_set()


class Role(Protocol):
    """What a role adds to the runtime."""

    @property
    def loop(self) -> ConsumeLoop: ...

    def watched(self) -> list[Coroutine[Any, Any, Any]]:
        """Work that runs beside the consume loop; its end (or failure) stops the role."""
        ...

    async def check(self) -> str | None:
        """The role's own readiness problem (engine, manifest reader), or None."""
        ...

    async def tick(self) -> None:
        """Called every commit interval, before the commit."""
        ...

    async def drain(self) -> bool:
        """After fetching stopped: finish what was taken; True when nothing was left."""
        ...


#: Container allocations between young-generation collections (CPython's default is 700).
#: A poll's thousand records, each a dozen objects, outlive many collections at 700, get
#: promoted, and soon make every collection a full one over the whole heap: that was a third of
#: the aggregator's CPU. Our records hold no cycles; refcounting frees them either way.
YOUNG_COLLECTION_THRESHOLD = 20_000


def collect_garbage_less_often() -> None:
    """Raise the young generation's threshold (process-wide; never lowers it)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_COLLECTION_THRESHOLD), middle, old)


def start_process(settings: Settings, service_name: str) -> None:
    """Logging and tracing of a role's process, before its event loop starts."""
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(settings, service_name)


class RoleRuntime:
    """The shared skeleton; a role holds one and hands itself to ``run``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = build_broker(settings)
        self.stopping = asyncio.Event()
        #: Metrics of this role's own state; /metrics serves it beside the default registry.
        self.registry = CollectorRegistry()

    def stop_on_signals(self) -> None:
        """SIGTERM and SIGINT set ``stopping``: a drain, not a traceback."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._interrupt)

    def _interrupt(self) -> None:
        _INTERRUPTED.set()
        self.stopping.set()

    async def readiness(self, role: Role) -> str | None:
        """None when the role makes progress: broker reachable, the role's own check passes,
        and its consume loop is neither failing nor stalled."""
        if self.stopping.is_set():
            return "stopping"
        if not await self.broker.ping(timeout=2):
            return "broker unreachable"
        problem = await role.check()
        return problem if problem is not None else role.loop.problem()

    async def run(self, role: Role) -> bool:
        """Serve until ``stopping`` is set or watched work ends; True when fully drained."""
        settings = self.settings
        collect_garbage_less_often()
        try:
            await ensure_topics(settings)
        except BaseException:
            await role.loop.stop()  # never started: closed, so it is not reported unclosed
            raise
        async with (
            self.broker,
            serving_ops(
                settings.ops_host,
                settings.ops_port,
                lambda: self.readiness(role),
                (REGISTRY, self.registry),
                metrics_token=settings.ops_metrics_token,
            ),
        ):
            await self.broker.start()
            await role.loop.start()
            try:
                return await self._until_stopped(role)
            finally:
                await role.loop.stop()

    async def _until_stopped(self, role: Role) -> bool:
        consuming = asyncio.create_task(role.loop.run())
        stopping = asyncio.create_task(self.stopping.wait())
        watched = [asyncio.create_task(work) for work in role.watched()]
        housekeeping = asyncio.create_task(self._housekeeping(role))
        await asyncio.wait({consuming, stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
        role.loop.stop_fetching()
        drained = await role.drain()
        for task in (stopping, housekeeping, *watched):
            task.cancel()
        await asyncio.gather(stopping, housekeeping, *watched, return_exceptions=True)
        await consuming  # returns after its current poll; re-raises a bug in the loop
        for task in watched:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        try:
            await role.loop.commit()
        except Exception as error:  # e.g. a rebalance took the partitions: they are re-read
            logger.warning("final commit failed: %s", error)
        return drained

    async def _housekeeping(self, role: Role) -> None:
        """Every commit interval: the role's tick, commit, lag gauge and stall gauge."""
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            try:
                await role.tick()
            except Exception:
                logger.exception("periodic check failed")
            await role.loop.commit_or_retry()
            try:
                await role.loop.report_lag()
                role.loop.stalled_partitions()
            except Exception as error:
                logger.warning("lag not reported: %r", error)


class RuntimeRole:
    """What every role exposes the same way, through its runtime and consume loop."""

    runtime: RoleRuntime
    loop: ConsumeLoop

    @property
    def stopping(self) -> asyncio.Event:
        """Set it to stop the role (SIGTERM does)."""
        return self.runtime.stopping

    @property
    def consumer(self) -> Any:
        return self.loop.consumer

    async def readiness(self) -> str | None:
        return await self.runtime.readiness(self)  # type: ignore[arg-type]
