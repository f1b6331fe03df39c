"""The gateway as an ASGI app, and ``llm-stream gateway``'s server.

Routes under ``/v1`` are OpenAI's Files and Batches API; ``/healthz``, ``/readyz`` and
``/metrics`` are the endpoints every role serves (``ops.server``); ``/docs`` is FastAPI's;
``/ui`` is a web page of the batches for people (``ui``). The gateway keeps no state of its
own: files and their records live in the file store, batches on the status topic, so replicas
behind a load balancer answer alike.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer
from prometheus_client import REGISTRY, CollectorRegistry

from llm_stream._version import __version__
from llm_stream.curation.judgements import Judgements, KafkaJudgements, MemoryJudgements
from llm_stream.files.opening import open_store
from llm_stream.files.store import FileStore
from llm_stream.gateway import batches_api, files_api, judgements_api, models_api, ui
from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.errors import EVERY_ROUTE, error_responses, install_error_handlers
from llm_stream.gateway.keyring import keys_required
from llm_stream.gateway.middleware import ApiKeyAuth, BodySizeLimit, RequestMetrics
from llm_stream.gateway.rate_limit import RATE_LIMIT_HEADERS, RequestRateLimit
from llm_stream.gateway.rate_sync import RateSync
from llm_stream.gateway.request_ids import RequestIds
from llm_stream.gateway.revocations import RevokedSessions
from llm_stream.gateway.state import Gateway
from llm_stream.gateway.stream import BatchStream, KafkaBatchStream
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import is_loopback
from llm_stream.ops.metrics import EnqueuedGauges
from llm_stream.ops.server import build_app
from llm_stream.settings import Settings, SettingsRefusedError

logger = logging.getLogger(__name__)

#: Declares the bearer key in the OpenAPI document (so /docs offers "Authorize"); the key is
#: checked by ``ApiKeyAuth`` before any body is read, not by this dependency.
_BEARER = HTTPBearer(
    auto_error=False,
    description="One of LLM_STREAM_GATEWAY_API_KEYS, or a key of the projects file.",
)


def create_app(
    settings: Settings,
    *,
    store: FileStore | None = None,
    stream: BatchStream | None = None,
    share_rates: bool | None = None,
    judgements: Judgements | None = None,
) -> FastAPI:
    """The gateway over ``stream`` (default: Kafka, as ``settings`` say) and ``store``
    (default: ``files.opening.open_store(settings)``, the same store as the aggregator's).
    ``share_rates``: count requests across replicas on the rate-counts topic (default: when
    the stream is Kafka's). ``judgements``: default: followed from Kafka when the stream is
    Kafka's, else kept in memory."""
    if judgements is None:
        judgements = KafkaJudgements(settings) if stream is None else MemoryJudgements()
    gateway = Gateway(
        settings=settings,
        store=store if store is not None else open_store(settings),
        stream=stream if stream is not None else KafkaBatchStream(settings),
        auth_failures=FailedAuthLimiter(
            settings.gateway_auth_max_failures, settings.gateway_auth_failure_window_s
        ),
        revoked_sessions=RevokedSessions(),
        judgements=judgements,
    )

    sync = None
    if share_rates if share_rates is not None else stream is None:
        sync = RateSync(settings, gateway.rate_limits.counts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.stream.start()
        await gateway.judgements.start()
        try:
            if sync is not None:
                await sync.start()
            yield
        finally:
            if sync is not None:
                await sync.close()
            await gateway.judgements.close()
            await gateway.stream.close()

    app = FastAPI(
        title="llm-stream gateway",
        version=__version__,
        description="The OpenAI Files and Batches API in front of a Kafka batch-inference bus.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.rate_sync = sync
    install_error_handlers(app)
    for router in (
        files_api.router,
        batches_api.router,
        judgements_api.router,
        models_api.router,
    ):
        app.include_router(
            router, dependencies=[Security(_BEARER)], responses=error_responses(*EVERY_ROUTE)
        )
    ui.install(app)  # the web page under /ui, with its own login (a browser sends no bearer)
    # The ops endpoints every role serves; readiness: the broker answers and the view follows.
    quotas = CollectorRegistry(auto_describe=True)
    quotas.register(EnqueuedGauges(gateway.stream.enqueued_by_project))
    ops = build_app(
        lambda: readiness(gateway), (REGISTRY, quotas), metrics_token=settings.ops_metrics_token
    )
    app.router.routes.extend(ops.routes)
    # Last added runs first: metrics see every answer, refusals included.
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.gateway_max_body_bytes,
        max_upload_bytes=settings.batch_max_file_bytes,
    )
    app.add_middleware(RequestRateLimit, limits=gateway.rate_limits, keys=gateway.keys)
    app.add_middleware(ApiKeyAuth, keys=gateway.keys, failures=gateway.auth_failures)
    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestIds)  # every answer names its request, refusals included
    if settings.gateway_cors_origins:  # outermost: a preflight carries no API key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.gateway_cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", *RATE_LIMIT_HEADERS],
            max_age=600,
        )
    return app


async def readiness(gateway: Gateway) -> str | None:
    """Not ready while the batch view or the judgements are not current: an answer from
    either would be out of date (request counts shared across replicas are not waited for:
    without them, limits hold per replica)."""
    return await gateway.stream.problem() or gateway.judgements.problem()


def bind_host(settings: Settings) -> str:
    """The configured address; unset, all interfaces only when API keys guard the gateway."""
    if settings.gateway_host is not None:
        return settings.gateway_host
    return "0.0.0.0" if keys_required(settings) else "127.0.0.1"


def check_exposure(settings: Settings) -> None:
    """Refuse a gateway without API keys (an empty keys file included) on an address beyond
    loopback, unless ``gateway_allow_no_auth`` says it is meant to be open."""
    host = bind_host(settings)
    if keys_required(settings) or is_loopback(host):
        return
    if not settings.gateway_allow_no_auth:
        raise SettingsRefusedError(
            f"the gateway would listen on {host} without API keys: set "
            "LLM_STREAM_GATEWAY_API_KEYS, listen on 127.0.0.1, or pass --allow-no-auth "
            "(LLM_STREAM_GATEWAY_ALLOW_NO_AUTH=true) to serve it open"
        )
    logger.warning("gateway on %s without API keys: anyone who reaches it may use it", host)


async def serve_gateway(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT (uvicorn's own handling); the exit code."""
    check_exposure(settings)
    # Kafka first: uvicorn would log a failure of the app's start-up as a traceback.
    await ensure_topics(settings)
    host = bind_host(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=host, port=settings.gateway_port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    await server.serve()
    return 0 if server.started else 1
