"""The worker's core: keep many requests in the engine at once, publish each result, and
commit a partition only up to the contiguous prefix of published results.

Records are handed in by the consume loop (``handle``) in partition order, never more than
``capacity`` says: ``handle`` starts each and returns, never waiting for earlier requests to
finish, so the engine's continuous batching never drains between polls.

A cancelled batch (``cancel_batch``) runs nothing more: each of its records still ends in
exactly one result line, ``batch_cancelled``, and its requests inside the engine are aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus

from opentelemetry.trace import SpanKind, StatusCode

from llm_stream.batch.error_bodies import error_response, response_too_large
from llm_stream.batch.recent_ids import RecentIds
from llm_stream.batch.result_lines import cancelled_result, new_request_id, result_message
from llm_stream.contracts import RequestMessage, ResponseData, ResultMessage
from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
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
from llm_stream.worker.observations import observe_answer, observe_timings
from llm_stream.worker.replies import Replies, ReplyRoute, ReplyUndeliverableError
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest, ParsedRecord, parse_record
from llm_stream.worker.routing import Claims, model_of

logger = logging.getLogger(__name__)

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
        replies: Replies | None = None,
    ) -> None:
        """``claims(topic, model)`` says whether this worker answers a record (routing by
        model: ``worker.routing``); unset, it answers every record. ``replies``: records that
        ask for a reply are answered on their reply topic; unset, no record may ask."""
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
        #: Batches asked to cancel (the most recent: an older one's leftovers would just run).
        self._cancelled_batches = RecentIds()
        #: Engine calls under way, by batch: what a cancel of the batch aborts.
        self._serving: dict[str, set[asyncio.Task[ResponseData]]] = {}
        #: Engine calls a cancel aborted: whatever they return is not an answer.
        self._aborted: set[asyncio.Task[ResponseData]] = set()
        self._accepting = True
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def capacity(self) -> int:
        return max(0, self._max_in_flight - len(self._tasks)) if self._accepting else 0

    async def handle(self, records: Sequence[IncomingRecord]) -> None:
        """Start work on each record of an owned partition; never waits for the engine.

        A record not started here (pipeline stopping, partition not owned) is never
        registered, so its offset is never committed and the partition's owner re-reads it.
        """
        for record in records:
            if not self._accepting:
                return
            if not self._offsets.start(record.topic_partition, record.offset):
                continue
            metrics.REQUESTS_IN_FLIGHT.inc()
            task = asyncio.create_task(self._process(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def committable(self) -> dict[TopicPartitionKey, int]:
        return self._offsets.committable()

    def cancel_batch(self, batch_id: str) -> int:
        """Answer the batch's records with ``batch_cancelled`` lines from now on, and abort its
        requests in the engine (they get that line too); return how many were aborted."""
        self._cancelled_batches.add(batch_id)
        aborted = 0
        for serving in self._serving.get(batch_id, ()):
            if serving.cancel():
                self._aborted.add(serving)
                aborted += 1
        if aborted:
            logger.info("batch %s cancelled: aborting %d requests", batch_id, aborted)
        return aborted

    async def assigned(self, partitions: Mapping[TopicPartitionKey, int]) -> None:
        for partition in partitions:
            self._offsets.assign(partition)

    async def revoked(self, partitions: Sequence[TopicPartitionKey]) -> tuple[()]:
        """Forget revoked partitions: their requests still in flight are answered, but their
        offsets are the new owner's to commit (it re-reads them: at least once)."""
        self._offsets.forget(partitions)
        return ()

    def holds(self, partition: TopicPartitionKey) -> bool:
        return self._offsets.holds(partition)

    async def _process(self, record: IncomingRecord) -> None:
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
            if isinstance(parsed, InvalidRequest):
                endpoint = "invalid"
                response = parsed.response
            else:
                endpoint = parsed.url if parsed.url in GEN_AI_OPERATIONS else "other"
                served = await self._serve_unless_cancelled(parsed, endpoint, upstream)
                if served is None:
                    await self._answer_cancelled(
                        upstream, parsed.batch_id, parsed.custom_id, "running"
                    )
                    return
                response = served
            if reply is not None:
                assert self._replies is not None
                try:
                    response = await self._replies.send(
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
                published = await self._publish(
                    upstream, result_message(parsed.batch_id, parsed.custom_id, response)
                )
                assert published.response is not None, "an answer stays an answer"
                response = published.response
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

    async def _serve_unless_cancelled(
        self, request: RequestMessage, endpoint: str, upstream: Mapping[str, str]
    ) -> ResponseData | None:
        """The engine's answer, or None when a cancel of the batch aborted the request.

        The engine call is a task of its own, which ``cancel_batch`` cancels: vLLM's
        ``AsyncLLM.generate`` then aborts the request in the engine core, but vLLM's serving
        layer turns the cancellation into a "Client disconnected" answer instead of raising.
        So what decides is whether the call was aborted, not how it ended; and when this task
        itself was cancelled (a drain), the answer is dropped too: the record is redelivered.
        """
        serving = asyncio.create_task(self._serve(request, endpoint, upstream))
        running = self._serving.setdefault(request.batch_id, set())
        running.add(serving)
        response: ResponseData | None = None
        try:
            response = await serving  # cancelling this task cancels ``serving`` too
        except asyncio.CancelledError:
            pass
        finally:
            running.discard(serving)
            if not running:
                self._serving.pop(request.batch_id, None)
        aborted = serving in self._aborted
        self._aborted.discard(serving)
        this_task = asyncio.current_task()
        if (this_task is not None and this_task.cancelling()) or (response is None and not aborted):
            raise asyncio.CancelledError
        return None if aborted else response

    async def _serve(
        self, request: RequestMessage, endpoint: str, upstream: Mapping[str, str]
    ) -> ResponseData:
        """Run one request through the engine inside a GenAI-convention span."""
        model = request.body.get("model")
        operation = GEN_AI_OPERATIONS.get(request.url, request.url)
        name = f"{operation} {model if isinstance(model, str) else ''}".strip()
        with telemetry.span(
            name,
            kind=SpanKind.CLIENT,
            attributes=lambda: telemetry.gen_ai_request_attributes(request.url, request.body),
        ) as span:
            started = time.monotonic()
            try:
                reply = await self._engine.serve(
                    EngineRequest(
                        method=request.method,
                        url=request.url,
                        body=request.body,
                        trace_headers=telemetry.outgoing_headers(upstream),
                    )
                )
            except EngineUnavailableError:
                raise
            except Exception as error:  # one request's surprise: a 500 line, not a dead worker
                logger.exception(
                    "unexpected error serving %s",
                    request.url,
                    extra={"batch_id": request.batch_id, "custom_id": request.custom_id},
                )
                reply = EngineReply(
                    error_response(
                        HTTPStatus.INTERNAL_SERVER_ERROR,
                        f"Internal error: {type(error).__name__}: {error}",
                        error_type="InternalServerError",
                    )
                )
            metrics.ENGINE_DURATION.labels(endpoint).observe(time.monotonic() - started)
            response = reply.response
            span.set_attributes(telemetry.gen_ai_response_attributes(response.body))
            if reply.timings is not None:
                observe_timings(span, endpoint, reply.timings)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(StatusCode.ERROR, f"HTTP {response.status_code}")
            return response

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
        return not self._offsets.in_flight()
