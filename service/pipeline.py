"""The worker's core: keep many requests in the engine at once, publish each result, and
commit a partition only up to the contiguous prefix of published results.

Records are handed in by the consumer (``submit``) in partition order. ``submit`` waits only for
a free in-flight slot, never for earlier requests to finish, so the engine's continuous batching
never drains between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from http import HTTPStatus

from service.contracts import RequestMessage, ResponseData, ResultMessage
from service.error_bodies import error_response
from service.offsets import OffsetTracker, TopicPartitionKey
from service.protocols import (
    EngineRequest,
    EngineUnavailableError,
    IncomingRecord,
    InferenceEngine,
    OffsetCommitter,
    ResultPublisher,
)
from service.request_parsing import DeadLetter, InvalidRequest, parse_record

logger = logging.getLogger(__name__)

#: Headers carried from a request to its result: W3C trace context.
PROPAGATED_HEADERS = ("traceparent", "tracestate", "baggage")


class RequestPipeline:
    """Runs records through the engine with bounded concurrency and at-least-once commits."""

    def __init__(
        self,
        engine: InferenceEngine,
        publisher: ResultPublisher,
        committer: OffsetCommitter,
        *,
        max_in_flight: int,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._committer = committer
        self._slots = asyncio.Semaphore(max_in_flight)
        self._offsets = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._commit_lock = asyncio.Lock()
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(self, record: IncomingRecord) -> bool:
        """Start work on ``record`` once a slot is free; False if the pipeline stopped taking work.

        A record refused here is never registered, so its offset is never committed and the next
        owner of the partition re-reads it.
        """
        await self._slots.acquire()
        if not self._accepting:
            self._slots.release()
            return False
        self._offsets.start(record.topic_partition, record.offset)
        task = asyncio.create_task(self._process(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _process(self, record: IncomingRecord) -> None:
        try:
            await self._answer(record)
        except Exception as error:  # the record stays uncommitted: it will be redelivered
            self._fail(error)
        else:
            self._offsets.finish(record.topic_partition, record.offset)
        finally:
            self._slots.release()

    async def _answer(self, record: IncomingRecord) -> None:
        parsed = parse_record(record.value)
        if isinstance(parsed, DeadLetter):
            logger.warning(
                "dead-lettering %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                parsed.reason,
            )
            await self._publisher.publish_dead_letter(
                record.value,
                record.key,
                {
                    "x-llm-stream-error": parsed.reason,
                    "x-llm-stream-source": f"{record.topic}/{record.partition}/{record.offset}",
                },
            )
            return
        trace = {k: v for k, v in record.headers.items() if k in PROPAGATED_HEADERS}
        if isinstance(parsed, InvalidRequest):
            response = error_response(
                HTTPStatus.BAD_REQUEST, parsed.message, error_type="BadRequestError"
            )
            batch_id, custom_id = parsed.batch_id, parsed.custom_id
        else:
            response = await self._serve(parsed, trace)
            batch_id, custom_id = parsed.batch_id, parsed.custom_id
        if not response.request_id:
            response = response.model_copy(update={"request_id": f"req_{uuid.uuid4().hex}"})
        result = ResultMessage(
            batch_id=batch_id,
            id=f"batch_req_{uuid.uuid4().hex}",
            custom_id=custom_id,
            response=response,
        )
        await self._publisher.publish_result(result, trace)

    async def _serve(self, request: RequestMessage, trace: Mapping[str, str]) -> ResponseData:
        return await self._engine.serve(
            EngineRequest(
                method=request.method, url=request.url, body=request.body, trace_headers=trace
            )
        )

    def _fail(self, error: BaseException) -> None:
        """Stop taking work; the worker exits and uncommitted records are redelivered."""
        if self.failure is None:
            if isinstance(error, EngineUnavailableError):
                logger.error("engine unavailable, stopping: %s", error)
            else:
                logger.exception("publishing a result failed, stopping", exc_info=error)
            self.failure = error
        self._accepting = False
        self.failed.set()

    async def commit(self) -> None:
        """Commit every partition's finished prefix that moved since the last commit."""
        async with self._commit_lock:
            offsets = self._offsets.committable()
            if offsets:
                await self._committer.commit(offsets)
                self._offsets.mark_committed(offsets)

    async def commit_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.commit()
            except Exception:
                logger.exception("offset commit failed; retrying at the next interval")

    async def release_partitions(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Before a rebalance takes partitions away: commit what is done, then forget them."""
        partitions = list(partitions)
        with contextlib.suppress(Exception):
            await self.commit()
        self._offsets.forget(partitions)

    async def drain(self, grace_period: float) -> bool:
        """Stop taking work, wait up to ``grace_period`` s for in-flight work, commit what finished.

        Returns True when nothing was left unfinished.
        """
        self._accepting = False
        pending = set(self._tasks)
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace_period)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running)
        await self.commit()
        return not self._offsets.in_flight()
