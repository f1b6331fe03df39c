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
import time
import uuid
from collections.abc import Iterable
from http import HTTPStatus

from opentelemetry.trace import Span, SpanKind, StatusCode

from service import metrics, telemetry
from service.contracts import RequestMessage, ResponseData, ResultMessage
from service.error_bodies import error_response
from service.offsets import OffsetTracker, TopicPartitionKey
from service.protocols import (
    EngineReply,
    EngineRequest,
    EngineTimings,
    EngineUnavailableError,
    IncomingRecord,
    InferenceEngine,
    OffsetCommitter,
    ResultPublisher,
)
from service.request_parsing import DeadLetter, InvalidRequest, parse_record
from service.telemetry import GEN_AI_OPERATIONS

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
        results_topic: str = "results",
        consumer_group: str | None = None,
    ) -> None:
        self._engine = engine
        self._results_topic = results_topic
        self._consumer_group = consumer_group
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
        metrics.REQUESTS_IN_FLIGHT.inc()
        task = asyncio.create_task(self._process(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _process(self, record: IncomingRecord) -> None:
        try:
            await self._answer(record)
        except Exception as error:  # the record stays uncommitted: it will be redelivered
            self.fail(error)
        else:
            self._offsets.finish(record.topic_partition, record.offset)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            self._slots.release()

    async def _answer(self, record: IncomingRecord) -> None:
        metrics.REQUESTS_CONSUMED.inc()
        parsed = parse_record(record.value)
        with telemetry.tracer().start_as_current_span(
            f"process {record.topic}",
            context=telemetry.context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes=telemetry.messaging_attributes(record, "process", self._consumer_group),
        ) as span:
            if isinstance(parsed, DeadLetter):
                span.set_status(StatusCode.ERROR, parsed.reason)
                await self._dead_letter(record, parsed)
                return
            span.set_attributes({"llm_stream.batch_id": parsed.batch_id})
            span.set_attributes({"llm_stream.custom_id": parsed.custom_id})
            if isinstance(parsed, InvalidRequest):
                endpoint = "invalid"
                response = error_response(
                    HTTPStatus.BAD_REQUEST, parsed.message, error_type="BadRequestError"
                )
            else:
                endpoint = parsed.url if parsed.url in GEN_AI_OPERATIONS else "other"
                response = await self._serve(parsed, endpoint)
            await self._publish(record, parsed.batch_id, parsed.custom_id, response)
            level = logging.WARNING if response.status_code >= 500 else logging.DEBUG
            logger.log(
                level,
                "answered %s with %d",
                endpoint,
                response.status_code,
                extra={"batch_id": parsed.batch_id, "custom_id": parsed.custom_id},
            )
        self._observe_answer(record, endpoint, response)

    async def _dead_letter(self, record: IncomingRecord, dead: DeadLetter) -> None:
        logger.warning(
            "dead-lettering %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            dead.reason,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        await self._publisher.publish_dead_letter(
            record.value,
            record.key,
            {
                "x-llm-stream-error": dead.reason,
                "x-llm-stream-source": f"{record.topic}/{record.partition}/{record.offset}",
            },
        )
        metrics.DEAD_LETTERS.inc()

    async def _serve(self, request: RequestMessage, endpoint: str) -> ResponseData:
        """Run one request through the engine inside a GenAI-convention span."""
        attributes = telemetry.gen_ai_request_attributes(request.url, request.body)
        model = request.body.get("model")
        name = f"{attributes['gen_ai.operation.name']} {model if isinstance(model, str) else ''}"
        with telemetry.tracer().start_as_current_span(
            name.strip(), kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            started = time.monotonic()
            try:
                reply = await self._engine.serve(
                    EngineRequest(
                        method=request.method,
                        url=request.url,
                        body=request.body,
                        trace_headers=telemetry.headers_with_context(),
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
                self._observe_timings(span, endpoint, reply.timings)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(StatusCode.ERROR, f"HTTP {response.status_code}")
            return response

    @staticmethod
    def _observe_timings(span: Span, endpoint: str, timings: EngineTimings) -> None:
        for name, value in (
            ("llm_stream.engine.queue_time_s", timings.queue),
            ("llm_stream.engine.time_to_first_token_s", timings.time_to_first_token),
            ("llm_stream.engine.generation_time_s", timings.generation),
        ):
            if value is not None:
                span.set_attribute(name, value)
        if timings.time_to_first_token is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(endpoint).observe(timings.time_to_first_token)

    async def _publish(
        self, record: IncomingRecord, batch_id: str, custom_id: str, response: ResponseData
    ) -> None:
        if not response.request_id:
            response = response.model_copy(update={"request_id": f"req_{uuid.uuid4().hex}"})
        result = ResultMessage(
            batch_id=batch_id,
            id=f"batch_req_{uuid.uuid4().hex}",
            custom_id=custom_id,
            response=response,
        )
        with telemetry.tracer().start_as_current_span(
            f"send {self._results_topic}",
            kind=SpanKind.PRODUCER,
            attributes=telemetry.publish_attributes(self._results_topic, batch_id),
        ):
            # Without a recording span, the request's own trace context passes through.
            passthrough = {k: v for k, v in record.headers.items() if k in PROPAGATED_HEADERS}
            await self._publisher.publish_result(
                result, telemetry.headers_with_context(passthrough)
            )

    @staticmethod
    def _observe_answer(record: IncomingRecord, endpoint: str, response: ResponseData) -> None:
        status = str(response.status_code)
        metrics.REQUESTS_ANSWERED.labels(endpoint, status).inc()
        if response.status_code != 200:
            metrics.REQUESTS_FAILED.labels(endpoint, status).inc()
        usage = (response.body or {}).get("usage") or {}
        if isinstance(usage.get("prompt_tokens"), int):
            metrics.PROMPT_TOKENS.labels(endpoint).inc(usage["prompt_tokens"])
        if isinstance(usage.get("completion_tokens"), int):
            metrics.COMPLETION_TOKENS.labels(endpoint).inc(usage["completion_tokens"])
        if record.timestamp_ms is not None:
            latency = max(0.0, time.time() - record.timestamp_ms / 1000)
            metrics.END_TO_END_LATENCY.labels(endpoint).observe(latency)

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

    async def commit(self) -> None:
        """Commit every partition's finished prefix that moved since the last commit."""
        async with self._commit_lock:
            offsets = self._offsets.committable()
            if offsets:
                await self._committer.commit(offsets)
                self._offsets.mark_committed(offsets)

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
