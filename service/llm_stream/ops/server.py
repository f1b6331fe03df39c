"""The operations HTTP endpoint of every process: /metrics, /healthz and /readyz.

/metrics serves the default Prometheus registry, so vLLM's own ``vllm:*`` engine metrics appear
beside ours. /healthz answers while the event loop runs (liveness); /readyz answers 200 only when
the process's readiness check passes (broker reachable, engine loaded), else 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

#: Returns None when ready, else why not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


def build_app(
    readiness: ReadinessCheck, registries: Sequence[CollectorRegistry] = (REGISTRY,)
) -> Starlette:
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
    ) -> None:
        app = build_app(readiness, registries)
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
        logger.info("operations endpoint on %s (/metrics, /healthz, /readyz)", self.address)

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
) -> AsyncIterator[OpsServer | None]:
    """Run the endpoint for the block's duration; no endpoint when ``port`` is None."""
    if port is None:
        yield None
        return
    server = OpsServer(host, port, readiness, registries)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
