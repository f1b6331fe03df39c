"""``llm-stream worker``: a consume loop feeds requests to the pipeline, which runs them
through vLLM and publishes each result.

The loop (``consume_loop``) fetches only as many records as the pipeline has free slots, so
fetching goes on while the engine works and never blocks; offsets are committed by the loop,
up to what the pipeline has finished. Beside it, the worker follows the batch-status topic and
tells the pipeline of every cancelled batch.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from llm_stream.contracts import BatchObject
from llm_stream.engine.protocol import EngineUnavailableError, InferenceEngine
from llm_stream.kafka.cancellations import CancelFollower
from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.live_workers import LiveWorkers
from llm_stream.kafka.model_topics import model_group, model_requests_topic
from llm_stream.kafka.publishers import KafkaResultPublisher
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.kafka.topics import ensure_topics
from llm_stream.protocols import IncomingRecord
from llm_stream.runtime.role import Role
from llm_stream.settings import Settings
from llm_stream.worker.announcer import WorkerAnnouncer
from llm_stream.worker.core import RequestPipeline
from llm_stream.worker.replies import KafkaReplyPublisher, Replies
from llm_stream.worker.routing import SharedTopicClaims
from llm_stream.worker.waiting import WaitingQueue

logger = logging.getLogger(__name__)


def in_flight_limit(settings: Settings, engine: InferenceEngine) -> int:
    """Records the worker keeps started: twice what the engine runs at once, unless set, so
    the engine's scheduler always has the next requests queued."""
    return settings.max_in_flight or 2 * engine.max_concurrency


@dataclass(frozen=True)
class WorkerRoute:
    """The topics a worker reads and its consumer group: with requests routed by model, its
    models' topics and the shared one, in its model's group; else the shared one, in the
    deployment's group."""

    topics: list[str]
    group: str

    @classmethod
    def of(cls, settings: Settings, models: Sequence[str]) -> WorkerRoute:
        shared = settings.requests_topic
        if not settings.route_by_model:
            return cls([shared], settings.worker_group_id)
        own = [model_requests_topic(shared, model) for model in models]
        return cls([shared, *own], model_group(settings.worker_group_id, models[0]))


class WorkerApp(Role):
    """One engine, one consumer-group member, one pipeline; announced on the workers topic."""

    def __init__(self, settings: Settings, engine: InferenceEngine) -> None:
        super().__init__(settings)
        self.engine = engine
        self.route = WorkerRoute.of(settings, engine.served_models)
        max_in_flight = in_flight_limit(settings, engine)
        #: What the other workers announce (read only when requests are routed by model).
        self.live_workers = LiveWorkers()
        self.announcements = TopicFollower(settings, settings.workers_topic, self._heard)
        claims = None
        if settings.route_by_model:
            claims = SharedTopicClaims(
                settings.requests_topic,
                engine.served_models,
                self.live_workers,
                self.announcements.settled,
            )
        self.reply_publisher = KafkaReplyPublisher(self.broker, settings)
        self.pipeline = RequestPipeline(
            engine,
            KafkaResultPublisher(self.broker, settings),
            max_in_flight=max_in_flight,
            max_message_bytes=settings.max_message_bytes,
            results_topic=settings.results_topic,
            consumer_group=self.route.group,
            claims=claims,
            waiting=WaitingQueue(
                max_records=settings.worker_max_waiting,
                max_bytes=settings.worker_max_waiting_bytes,
                aging_s=settings.worker_priority_aging_s or None,  # 0: strict priority
            ),
            replies=Replies.of(settings, self.reply_publisher),
        )
        self.loop = ConsumeLoop(
            settings, self.route.topics, self.route.group, self.pipeline, max_records=max_in_flight
        )
        self.cancels = CancelFollower(settings, self._cancel)
        self.announcer = WorkerAnnouncer(
            settings,
            models=engine.served_models,
            consumer_group=self.route.group,
            topics=self.route.topics,
            max_concurrency=engine.max_concurrency,
            endpoints=lambda: engine.served_endpoints,
        )

    async def _heard(self, records: Sequence[IncomingRecord]) -> None:
        self.live_workers.add(records)

    def topics(self) -> list[str]:
        return list(dict.fromkeys([*self.settings.topics(), *self.route.topics]))

    async def _cancel(self, batch: BatchObject) -> None:
        self.pipeline.cancel_batch(batch.id)

    def watched(self) -> list[Coroutine[Any, Any, Any]]:
        work = [self.pipeline.failed.wait(), self.cancels.run(), self.announcer.run()]
        if self.settings.route_by_model:
            work.append(self.announcements.run())
        return work

    async def check(self) -> str | None:
        if self.pipeline.failed.is_set():
            return "stopping"
        if (problem := self.cancels.problem()) is not None:
            return problem
        if self.settings.route_by_model and (problem := self.announcements.problem()):
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
        try:
            drained = await self.serve()
        finally:
            await self.announcer.withdraw()
            await self.reply_publisher.close()
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
