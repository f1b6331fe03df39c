"""The worker's calls into the engine: each a task of its own inside a GenAI span, remembered
by batch so that a cancel of the batch aborts them.

vLLM's ``AsyncLLM.generate`` aborts a request in the engine core when its task is cancelled,
but vLLM's serving layer turns that cancellation into a "Client disconnected" answer instead of
raising. So what decides whether an answer counts is whether the call was aborted by a cancel,
not how it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus

from opentelemetry.trace import SpanKind, StatusCode

from llm_stream.batch.error_bodies import error_response
from llm_stream.contracts import RequestMessage, ResponseData
from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
    EngineUnavailableError,
    InferenceEngine,
)
from llm_stream.ops import metrics, telemetry
from llm_stream.ops.telemetry import GEN_AI_OPERATIONS
from llm_stream.worker.observations import observe_timings

logger = logging.getLogger(__name__)


class EngineCalls:
    """Engine calls under way, by batch, and which of them a cancel aborted."""

    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine
        self._serving: dict[str, set[asyncio.Task[ResponseData]]] = {}
        #: Calls a cancel aborted: whatever they return is not an answer.
        self._aborted: set[asyncio.Task[ResponseData]] = set()

    def abort_batch(self, batch_id: str) -> int:
        """Abort the batch's calls under way; how many were."""
        aborted = 0
        for serving in self._serving.get(batch_id, ()):
            if serving.cancel():
                self._aborted.add(serving)
                aborted += 1
        return aborted

    async def serve_unless_cancelled(
        self,
        request: RequestMessage,
        endpoint: str,
        upstream: Mapping[str, str],
        priority: int | None,
    ) -> ResponseData | None:
        """The engine's answer, or None when a cancel of the batch aborted the request; when
        the calling task itself is cancelled (a drain), CancelledError: the record is
        redelivered."""
        serving = asyncio.create_task(self._serve(request, endpoint, upstream, priority))
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
        self,
        request: RequestMessage,
        endpoint: str,
        upstream: Mapping[str, str],
        priority: int | None,
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
                        priority=priority,
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
