"""The real engine: one vLLM ``AsyncLLM`` behind vLLM's own OpenAI serving objects, no HTTP.

Chat templates, sampling parameters, ``n``, logprobs, stop strings, seeds, structured output,
usage counts and error bodies are therefore exactly what ``vllm serve`` would answer; this
module only routes a batch line to the right serving object and turns its return value into
a status code and a JSON body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

import pydantic

from llm_stream.batch.error_bodies import endpoint_not_served, error_response
from llm_stream.batch.request_line import serving_refusal
from llm_stream.contracts import ResponseData
from llm_stream.engine.media_policy import MediaPolicy
from llm_stream.engine.protocol import (
    EngineReply,
    EngineRequest,
    EngineTimings,
    EngineUnavailableError,
)
from llm_stream.engine.vllm_routes import served_endpoints, vllm_routes

#: The header by which vLLM's serving layer takes a request's priority (its
#: ``vllm.entrypoints.generate.base.serving.PRIORITY_HEADER``; not imported: vLLM is optional).
PRIORITY_HEADER = "X-Vllm-Priority"

logger = logging.getLogger(__name__)


def _seconds(value: Any) -> float | None:
    return float(value) / 1000 if isinstance(value, int | float) else None


def _timings(metrics: dict[str, Any]) -> EngineTimings:
    """vLLM's PerRequestMetrics (milliseconds) as seconds."""
    return EngineTimings(
        queue=_seconds(metrics.get("queue_time_ms")),
        time_to_first_token=_seconds(metrics.get("time_to_first_token_ms")),
        generation=_seconds(metrics.get("generation_time_ms")),
    )


class VllmEngine:
    """Implements ``InferenceEngine`` with vLLM's ``AsyncLLM`` and OpenAI serving layer."""

    def __init__(
        self,
        engine_client: Any,
        state: SimpleNamespace,
        *,
        keep_metrics_in_body: bool = True,
        media: MediaPolicy | None = None,
    ) -> None:
        self._engine = engine_client
        self._state = state
        self._keep_metrics_in_body = keep_metrics_in_body
        self._media = media or MediaPolicy()
        #: Only an engine run with ``--scheduling-policy priority`` takes priorities: vLLM
        #: refuses a request with one other than 0 under first-come-first-served.
        config = getattr(engine_client, "vllm_config", None)
        policy = getattr(getattr(config, "scheduler_config", None), "policy", "fcfs")
        self._by_priority = str(getattr(policy, "value", policy)) == "priority"
        models = getattr(state, "openai_serving_models", None)
        self._served_models = tuple(path.name for path in getattr(models, "base_model_paths", ()))
        self._routes = vllm_routes(state, self._media)
        self._served_endpoints = served_endpoints(self._routes)

    @classmethod
    async def start(
        cls,
        args: argparse.Namespace,
        *,
        media: MediaPolicy | None = None,
        configured: Callable[[int], object] | None = None,
    ) -> VllmEngine:
        """Start the engine from vLLM's own parsed CLI arguments (see
        ``worker.args.parse_worker_args``); ``media``: which media URLs it may fetch (default:
        vLLM's media flags alone);
        ``configured`` is told ``max_num_seqs`` once known, before the engine loads."""
        from vllm import envs
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        from llm_stream.engine.start_log import EngineStartError, EngineStartLog
        from llm_stream.ops.orphan_guard import OrphanGuard

        # vLLM's per-request timings feed our spans and histograms; they stay out of response
        # bodies unless the user asked for them with --enable-per-request-metrics.
        asked_for_metrics = bool(args.enable_per_request_metrics)
        if not args.disable_log_stats:
            args.enable_per_request_metrics = True
        media = media or MediaPolicy.from_engine_args(args)
        media.configure_engine(args)
        engine_args = AsyncEngineArgs.from_cli_args(args)
        # Throughput, not latency, is the goal: take the scheduler defaults vLLM gives its
        # offline LLM class (larger max_num_seqs / max_num_batched_tokens than its servers).
        usage = UsageContext.LLM_CLASS
        vllm_config = engine_args.create_engine_config(usage_context=usage)
        if configured is not None:
            configured(int(vllm_config.scheduler_config.max_num_seqs))
        # The engine core does not watch us: the guard ends it if we die by SIGKILL, even
        # while it is still starting (it adopts the children we start until sealed).
        guard = OrphanGuard.start(adopt_children=True)
        start_log = EngineStartLog()
        try:
            # vLLM blocks while its engine core loads (tens of seconds): in a thread, so this
            # process's event loop goes on (health checks, run-batch's own start-up). AsyncLLM
            # starts its output tasks on the first request when made outside a running loop.
            with start_log:
                engine = await asyncio.to_thread(
                    AsyncLLM.from_vllm_config,
                    vllm_config=vllm_config,
                    usage_context=usage,
                    enable_log_requests=engine_args.enable_log_requests,
                    disable_log_stats=engine_args.disable_log_stats,
                )
        except BaseException as error:
            guard.release()
            cause = start_log.cause() if "root cause above" in str(error) else None
            if cause is not None:  # the engine core's own words, not "see above"
                raise EngineStartError(cause) from error
            raise
        guard.seal()
        try:
            state = SimpleNamespace(orphan_guard=guard)
            await init_app_state(engine, state, args, await engine.get_supported_tasks())
        except BaseException:
            engine.shutdown()
            guard.release()
            raise
        # vLLM reads its settings from the environment on every access unless told they are
        # final, which its engine core and workers do once started: the output handler here
        # reads one per generated token (a getenv each, a tenth of its time).
        envs.enable_envs_cache()
        return cls(engine, state, keep_metrics_in_body=asked_for_metrics, media=media)

    @property
    def max_concurrency(self) -> int:
        return int(self._engine.vllm_config.scheduler_config.max_num_seqs)

    @property
    def served_models(self) -> tuple[str, ...]:
        """vLLM's served model names (``--served-model-name``, else the model's path)."""
        if self._served_models:
            return self._served_models
        name = self._engine.vllm_config.model_config.served_model_name
        return tuple(name) if isinstance(name, list) else (str(name),)

    @property
    def served_endpoints(self) -> tuple[str, ...]:
        """The endpoints the loaded model serves (vLLM made a serving object for each)."""
        return self._served_endpoints

    async def serve(self, request: EngineRequest) -> EngineReply:
        try:
            response = await self._respond(request)
        except Exception as error:
            self._raise_if_dead(error)  # else the pipeline answers this request with a 500
            raise
        body = response.body
        if body is None or not isinstance(body.get("metrics"), dict):
            return EngineReply(response)
        metrics = body["metrics"] if self._keep_metrics_in_body else body.pop("metrics")
        return EngineReply(response, _timings(metrics))

    async def _respond(self, request: EngineRequest) -> ResponseData:
        refusal = serving_refusal(request.method, request.url, request.body)
        if refusal is None:
            refusal = self._media.refusal(request.body)
        if refusal is not None:
            return refusal
        route = self._routes[request.url]  # one route per supported endpoint
        if route.handler is None:
            return endpoint_not_served(request.url)
        try:
            parsed = route.request_type.validate_python(request.body)
        except pydantic.ValidationError as error:
            return await self._validation_error(error)
        headers = dict(request.trace_headers)
        if self._by_priority and request.priority is not None:
            headers[PRIORITY_HEADER] = str(request.priority)  # vLLM's own; beats body.priority
        raw_request = SimpleNamespace(headers=headers, state=SimpleNamespace())
        try:
            response = await route.handler(parsed, raw_request)
        except Exception as error:
            self._raise_if_dead(error)
            from vllm.entrypoints.serve import create_error_response

            response = create_error_response(error)
        return self._to_response_data(response, by_alias=route.by_alias)

    def _raise_if_dead(self, error: BaseException) -> None:
        if self._engine.errored:
            raise EngineUnavailableError(f"vLLM engine is dead: {error}") from error

    def _to_response_data(self, response: Any, *, by_alias: bool = False) -> ResponseData:
        from starlette.responses import Response
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse

        if isinstance(response, ErrorResponse):
            if response.error.code >= 500:
                self._raise_if_dead(RuntimeError(response.error.message))
            return ResponseData(
                status_code=response.error.code, request_id="", body=response.model_dump()
            )
        if isinstance(response, Response):  # pooling endpoints answer with a JSONResponse
            body = json.loads(bytes(response.body))
            return ResponseData(
                status_code=response.status_code, request_id=body.get("id", ""), body=body
            )
        if isinstance(response, pydantic.BaseModel):
            body = response.model_dump(mode="json", by_alias=by_alias)
            return ResponseData(status_code=200, request_id=body.get("id", ""), body=body)
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, f"Unexpected engine response {type(response)!r}"
        )

    async def _validation_error(self, error: pydantic.ValidationError) -> ResponseData:
        """The 400 body vLLM's server gives for a body that fails request validation."""
        from fastapi.exceptions import RequestValidationError
        from vllm.entrypoints.serve.exception_handling.handlers.validation import (
            validation_exception_handler,
        )

        errors = [
            {**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)
        ]
        fake_http_request = SimpleNamespace(
            app=SimpleNamespace(state=SimpleNamespace(args=SimpleNamespace(log_error_stack=False))),
            state=SimpleNamespace(),
        )
        response = await validation_exception_handler(
            fake_http_request,
            RequestValidationError(errors),
        )
        return ResponseData(
            status_code=response.status_code, request_id="", body=json.loads(bytes(response.body))
        )

    async def check_health(self) -> None:
        try:
            await self._engine.check_health()
        except Exception as error:
            raise EngineUnavailableError(str(error)) from error

    async def close(self) -> None:
        # vLLM's configured shutdown timeout (0 by default, as its run-batch uses): without it
        # the engine core gets a fixed grace period before it is killed.
        self._engine.shutdown(timeout=self._engine.vllm_config.shutdown_timeout)
        # After the shutdown, so that a worker killed while shutting down is still covered;
        # the engine core is gone by now and the guard kills nothing.
        guard = getattr(self._state, "orphan_guard", None)
        if guard is not None:
            guard.release()
