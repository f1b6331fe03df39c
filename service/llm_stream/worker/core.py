"""The worker's core: keep many requests in the engine at once, publish each result, and
commit a partition only up to the contiguous prefix of published results.

Records are handed in by the consume loop (``handle``) in partition order, never more than
``capacity`` says: ``handle`` starts each and returns, never waiting for earlier requests to
finish, so the engine's continuous batching never drains between polls.

Records beyond the engine's room wait in ``worker.waiting``'s priority queue; one whose deadline
passed when it would start is answered ``batch_expired`` instead (``batch.deadlines``).

A cancelled batch (``cancel_batch``) runs nothing more: each of its records still ends in
exactly one result line, ``batch_cancelled``, and its requests inside the engine are aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from opentelemetry.trace import SpanKind, StatusCode

from llm_stream.batch.deadlines import deadline_of, expired_error, has_expired
from llm_stream.batch.error_bodies import response_too_large
from llm_stream.batch.priority import priority_of
from llm_stream.batch.recent_ids import RecentIds
from llm_stream.batch.result_lines import cancelled_result, new_request_id, result_message
from llm_stream.contracts import ErrorData, ReplyMessage, ResponseData, ResultMessage
from llm_stream.engine.protocol import (
    EngineUnavailableError,
    InferenceEngine,
)
from llm_stream.kafka.dead_letters import dead_letter_of
from llm_stream.kafka.offsets import OffsetTracker
from llm_stream.ops import metrics, telemetry
from llm_stream.ops.telemetry import GEN_AI_OPERATIONS
from llm_stream.protocols import (
    IncomingRecord,
    MessageTooLargeError,
    ResultPublisher,
    TopicPartitionKey,
)
from llm_stream.worker.engine_calls import EngineCalls
from llm_stream.worker.observations import observe_answer
from llm_stream.worker.replies import Replies, ReplyRoute, ReplyUndeliverableError
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest, ParsedRecord, parse_record
from llm_stream.worker.routing import Claims, model_of
from llm_stream.worker.waiting import WaitingQueue

logger = logging.getLogger(__name__)
Headers = Mapping[str, str]

#: Headers carried from a request to its result: W3C trace context.
PROPAGATED_HEADERS = ("traceparent", "tracestate", "baggage")
#: W3C caps tracestate at 512 and baggage at 8192 characters; longer values are not carried.
_MAX_PROPAGATED_CHARS = 8192


def propagated_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's trace headers that travel on to its result (bounded in size)."""
    return {
        name: value
        for name, value in headers.items()
        if name in PROPAGATED_HEADERS and len(value) <= _MAX_PROPAGATED_CHARS
    }


class RequestPipeline:
    """Runs records through the engine with bounded concurrency; a ``RecordHandler``.

    It never blocks its consume loop: ``capacity`` tells the loop how many records it takes,
    and ``handle`` only starts their work.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        publisher: ResultPublisher,
        *,
        max_in_flight: int,
        max_message_bytes: int = 1_048_576,
        results_topic: str = "results",
        consumer_group: str | None = None,
        claims: Claims | None = None,
        waiting: WaitingQueue | None = None,
        replies: Replies | None = None,
    ) -> None:
        """``claims(topic, model)`` says whether this worker answers a record (routing by
        model: ``worker.routing``); unset, it answers every record. ``waiting``: where records
        beyond ``max_in_flight`` wait (unset: none are fetched beyond it). ``replies``: records
        that ask for a reply are answered on their reply topic; unset, no record may ask."""
        self._replies = replies
        self._engine = engine
        self._claims = claims
        self._results_topic = results_topic
        self._consumer_group = consumer_group
        self._publisher = publisher
        self._max_in_flight = max_in_flight
        self._max_message_bytes = max_message_bytes
        self._offsets = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = WaitingQueue(max_records=0, max_bytes=0) if waiting is None else waiting
        #: Batches asked to cancel (the most recent: an older one's leftovers would just run).
        self._cancelled_batches = RecentIds()
        #: Engine calls under way, by batch: what a cancel of the batch aborts.
        self._calls = EngineCalls(engine)
        self._accepting = True
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def capacity(self) -> int:
        if not self._accepting:
            return 0
        return max(0, self._max_in_flight - len(self._tasks)) + self._waiting.room()

    async def handle(self, records: Sequence[IncomingRecord]) -> None:
        """Queue each record of an owned partition, start the most urgent the engine has room
        for; never waits. Offsets are registered here, in partition order, whatever order work
        starts in; a record not registered (stopping, not owned) is re-read by its owner."""
        for record in records:
            if not self._accepting:
                break
            if self._offsets.start(record.topic_partition, record.offset):
                self._waiting.push(record)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start waiting records, most urgent first, while the engine has room."""
        while self._accepting and self._waiting and len(self._tasks) < self._max_in_flight:
            record = self._waiting.pop()
            task = asyncio.create_task(self._process(record))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        metrics.REQUESTS_WAITING.set(len(self._waiting))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start_waiting()

    def committable(self) -> dict[TopicPartitionKey, int]:
        return self._offsets.committable()

    def cancel_batch(self, batch_id: str) -> int:
        """Answer the batch's records with ``batch_cancelled`` lines from now on, and abort its
        requests in the engine (they get that line too); return how many were aborted."""
        self._cancelled_batches.add(batch_id)
        aborted = self._calls.abort_batch(batch_id)
        if aborted:
            logger.info("batch %s cancelled: aborting %d requests", batch_id, aborted)
        return aborted

    async def assigned(self, partitions: Mapping[TopicPartitionKey, int]) -> None:
        for partition in partitions:
            self._offsets.assign(partition)

    async def revoked(self, partitions: Sequence[TopicPartitionKey]) -> tuple[()]:
        """Forget revoked partitions: their requests still in flight are answered, but their
        offsets are the new owner's to commit (it re-reads them: at least once); their
        records still waiting are dropped unanswered."""
        self._waiting.drop(set(partitions))
        self._offsets.forget(partitions)
        return ()

    def holds(self, partition: TopicPartitionKey) -> bool:
        return self._offsets.holds(partition)

    async def _process(self, record: IncomingRecord) -> None:
        # Counted here, not where the task is made: a task cancelled before its first step
        # (a drain) never runs its ``finally``, and would leave the gauge one too high.
        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            await self._answer(record)
        except Exception as error:  # the record stays uncommitted: it will be redelivered
            self.fail(error)
        else:
            self._offsets.finish(record.topic_partition, record.offset)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()

    async def _answer(self, record: IncomingRecord) -> None:
        metrics.REQUESTS_CONSUMED.inc()
        route = self._replies.route(record.headers) if self._replies is not None else None
        parsed: ParsedRecord = (
            route
            if isinstance(route, DeadLetter)
            else parse_record(
                record.value, max_bytes=self._max_message_bytes, single=route is not None
            )
        )
        if self._claims is not None and not await self._claims(record.topic, model_of(parsed)):
            metrics.REQUESTS_LEFT_TO_OTHERS.inc()  # another model's group answers it
            return
        if isinstance(route, ReplyRoute) and not isinstance(parsed, DeadLetter):
            assert self._replies is not None
            parsed = await self._replies.missing(route) or parsed
        with telemetry.span(
            f"process {record.topic}",
            kind=SpanKind.CONSUMER,
            headers=record.headers,
            attributes=lambda: telemetry.messaging_attributes(
                record, "process", self._consumer_group
            ),
        ) as span:
            if isinstance(parsed, DeadLetter):
                span.set_status(StatusCode.ERROR, parsed.reason)
                await self._dead_letter(record, parsed)
                return
            span.set_attributes({"llm_stream.batch_id": parsed.batch_id})
            span.set_attributes({"llm_stream.custom_id": parsed.custom_id})
            upstream = propagated_headers(record.headers)  # for the engine and the result
            reply = route if isinstance(route, ReplyRoute) else None
            if reply is None and parsed.batch_id in self._cancelled_batches:
                await self._answer_cancelled(upstream, parsed.batch_id, parsed.custom_id, "queued")
                return
            endpoint = "invalid"
            if isinstance(parsed, InvalidRequest):
                response: ResponseData | ErrorData = parsed.response
            elif has_expired(deadline_of(record.headers), time.time()):
                metrics.REQUESTS_EXPIRED.inc()
                response = expired_error(single=reply is not None)
            else:
                endpoint = parsed.url if parsed.url in GEN_AI_OPERATIONS else "other"
                served = await self._calls.serve_unless_cancelled(
                    parsed, endpoint, upstream, priority_of(record.headers)
                )
                if served is None:
                    await self._answer_cancelled(
                        upstream, parsed.batch_id, parsed.custom_id, "running"
                    )
                    return
                response = served
            sent: ResultMessage | ReplyMessage
            if reply is not None:
                assert self._replies is not None
                try:
                    sent = await self._replies.send(
                        reply,
                        record.key,
                        telemetry.outgoing_headers(upstream),
                        parsed.custom_id,
                        response,
                    )
                except ReplyUndeliverableError as error:
                    await self._dead_letter(record, DeadLetter(str(error)))
                    return
            else:
                sent = await self._publish(
                    upstream, result_message(parsed.batch_id, parsed.custom_id, response)
                )
            if sent.response is None:  # an error line of the service's own (expired)
                return
            response = sent.response
            level = logging.WARNING if response.status_code >= 500 else logging.DEBUG
            logger.log(
                level,
                "answered %s with %d",
                endpoint,
                response.status_code,
                extra={"batch_id": parsed.batch_id, "custom_id": parsed.custom_id},
            )
        observe_answer(record, endpoint, response)

    async def _dead_letter(self, record: IncomingRecord, dead: DeadLetter) -> None:
        logger.warning(
            "dead-lettering %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            dead.reason[:200],
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        letter = dead_letter_of(record, dead.reason, self._max_message_bytes)
        await self._publisher.publish_dead_letter(letter.value, letter.key, letter.headers)
        metrics.DEAD_LETTERS.inc()

    async def _answer_cancelled(
        self, upstream: Mapping[str, str], batch_id: str, custom_id: str, stage: str
    ) -> None:
        await self._publish(upstream, cancelled_result(batch_id, custom_id))
        metrics.REQUESTS_CANCELLED.labels(stage).inc()
        logger.debug(
            "answered batch_cancelled (%s)",
            stage,
            extra={"batch_id": batch_id, "custom_id": custom_id},
        )

    async def _publish(self, upstream: Mapping[str, str], result: ResultMessage) -> ResultMessage:
        """Publish the result line with the request's propagated ``upstream`` headers; an
        answer too large for Kafka becomes an error line."""
        with telemetry.span(
            f"send {self._results_topic}",
            kind=SpanKind.PRODUCER,
            attributes=lambda: telemetry.publish_attributes(self._results_topic, result.batch_id),
        ):
            # Without a recording span, the request's own trace context passes through.
            headers = telemetry.outgoing_headers(upstream)
            try:
                await self._publisher.publish_result(result, headers)
            except MessageTooLargeError as error:
                metrics.RESULTS_TOO_LARGE.inc()
                logger.warning(
                    "answer too large to publish: %s",
                    error,
                    extra={"batch_id": result.batch_id, "custom_id": result.custom_id},
                )
                response = response_too_large(error.size, error.limit, new_request_id())
                result = result.model_copy(update={"response": response})
                await self._publisher.publish_result(result, headers)
        return result

    def fail(self, error: BaseException) -> None:
        """Stop taking work; the worker exits and uncommitted records are redelivered."""
        if self.failure is None:
            if isinstance(error, EngineUnavailableError):
                logger.error("engine unavailable, stopping: %s", error)
            else:
                logger.exception("publishing a result failed, stopping", exc_info=error)
            self.failure = error
        self._accepting = False
        self.failed.set()

    async def drain(self, grace_period: float) -> bool:
        """Stop taking work and wait up to ``grace_period`` s for the work in flight.

        Returns True when nothing started was left unfinished.
        """
        self._accepting = False
        never_started = len(self._waiting)  # uncommitted, so redelivered: not a drain failure
        self._waiting.clear()
        pending = set(self._tasks)
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace_period)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running)
        return self._offsets.in_flight() <= never_started
