"""The operations HTTP endpoint of every process: /metrics, /healthz and /readyz.

/metrics serves the default Prometheus registry, so vLLM's own ``vllm:*`` engine metrics appear
beside ours. /healthz answers while the event loop runs (liveness); /readyz answers 200 only when
the process's readiness check passes (broker reachable, engine loaded), else 503 with the reason.

The endpoint binds all interfaces by default (``Settings.ops_host``), so that a container's
probes and scrapers reach it. Metrics name topics, groups, models and batch counts: with
``Settings.ops_metrics_token`` set, /metrics answers only a request that carries it as a bearer
token. The health endpoints stay open (probes carry no credentials) and say nothing secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

#: Returns None when ready, else why not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


def bearer_token_matches(request: Request, token: SecretStr) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``, compared in constant time
    so the time taken does not tell how much of a guess was right."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    matches = secrets.compare_digest(presented.encode(), expected)
    return scheme.lower() == "bearer" and bool(expected) and matches


def _unauthorized() -> PlainTextResponse:
    return PlainTextResponse(
        "unauthorized: /metrics needs the bearer token of LLM_STREAM_OPS_METRICS_TOKEN\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


def build_app(
    readiness: ReadinessCheck,
    registries: Sequence[CollectorRegistry] = (REGISTRY,),
    *,
    metrics_token: SecretStr | None = None,
) -> Starlette:
    """The three endpoints; ``metrics_token``: the bearer token /metrics requires, if any."""

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> PlainTextResponse:
        try:
            problem = await asyncio.wait_for(readiness(), timeout=5)
        except Exception as error:  # a check that hangs or fails means not ready
            problem = f"readiness check failed: {error!r}"
        if problem is None:
            return PlainTextResponse("ready\n")
        return PlainTextResponse(f"not ready: {problem}\n", status_code=503)

    async def prometheus(request: Request) -> Response:
        if metrics_token is not None and not bearer_token_matches(request, metrics_token):
            return _unauthorized()
        text = b"".join(generate_latest(registry) for registry in registries)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
        ]
    )


class OpsServer:
    """Serves the operations endpoint in the running event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        registries: Sequence[CollectorRegistry] = (REGISTRY,),
        *,
        metrics_token: SecretStr | None = None,
    ) -> None:
        app = build_app(readiness, registries, metrics_token=metrics_token)
        self._metrics_guarded = metrics_token is not None
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.address = f"http://{host}:{port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise why it could not start (port in use, ...)
            await asyncio.sleep(0.01)
        metrics = "/metrics with a bearer token" if self._metrics_guarded else "/metrics"
        logger.info("operations endpoint on %s (%s, /healthz, /readyz)", self.address, metrics)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def serving_ops(
    host: str,
    port: int | None,
    readiness: ReadinessCheck,
    registries: Sequence[CollectorRegistry] = (REGISTRY,),
    *,
    metrics_token: SecretStr | None = None,
) -> AsyncIterator[OpsServer | None]:
    """Run the endpoint for the block's duration; no endpoint when ``port`` is None."""
    if port is None:
        yield None
        return
    server = OpsServer(host, port, readiness, registries, metrics_token=metrics_token)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
