"""One event to one endpoint, at least once: attempts with exponential back-off and a cap.

Any answer other than 2xx, a timeout or a connection error is a failed attempt (Standard
Webhooks: the receiver answers 2xx once it has the event); after ``max_attempts`` the delivery
has finally failed and the caller records it. Redirects are not followed: the configured URL is
the one the operator allowed.

An attempt is bounded whatever the receiver does: ``attempt_timeout_s`` is its total time
(httpx's timeouts bound each connect, read and write, so a receiver trickling a byte at a time
would hold it for ever), and of a refusal's body only the first ``ERROR_BODY_BYTES`` are read
(as sent: no compression is accepted, so nothing is inflated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from llm_stream._version import __version__
from llm_stream.notifier.endpoints import WebhookEndpoint
from llm_stream.notifier.events import BatchEvent
from llm_stream.ops import metrics
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: Bytes of a refused delivery's answer read for its error message; the rest is not read.
ERROR_BODY_BYTES = 1024
#: Characters of that answer kept in the message.
ERROR_BODY_CHARS = 200


def webhook_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The notifier's HTTP client: the attempt timeout (for each operation; ``deliver``
    bounds the whole attempt), no redirect followed, answers asked for uncompressed."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        headers={"user-agent": f"llm-stream-notifier/{__version__}", "accept-encoding": "identity"},
        transport=transport,
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits between attempts: ``base_s`` doubled after each failure, never above ``cap_s``;
    each attempt given ``attempt_timeout_s`` in all."""

    base_s: float
    cap_s: float
    max_attempts: int
    attempt_timeout_s: float = Settings.model_fields["webhook_timeout_s"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.webhook_retry_base_s,
            settings.webhook_retry_cap_s,
            settings.webhook_max_attempts,
            settings.webhook_timeout_s,
        )

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """How the delivery of one event to one endpoint ended."""

    endpoint: WebhookEndpoint
    event: BatchEvent
    delivered: bool
    attempts: int
    last_error: str | None = None


async def deliver(
    client: httpx.AsyncClient,
    endpoint: WebhookEndpoint,
    event: BatchEvent,
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
) -> DeliveryOutcome:
    """POST ``event`` to ``endpoint`` until it answers 2xx or the attempts run out."""
    body = event.body()
    error = "no attempt made"
    for attempt in range(1, policy.max_attempts + 1):
        if attempt > 1:
            await sleep(policy.delay_after(attempt - 1))
        started = time.monotonic()
        error = await _attempt(client, endpoint, event, body, policy.attempt_timeout_s)
        if not error:
            logger.info(
                "delivered %s (%s of %s) to %s, attempt %d, %.0f ms",
                event.id,
                event.type,
                event.batch_id,
                endpoint.display_url,
                attempt,
                (time.monotonic() - started) * 1000,
            )
            return DeliveryOutcome(endpoint, event, delivered=True, attempts=attempt)
        logger.warning(
            "delivery of %s to %s failed (attempt %d of %d): %s",
            event.id,
            endpoint.display_url,
            attempt,
            policy.max_attempts,
            error,
        )
    return DeliveryOutcome(
        endpoint, event, delivered=False, attempts=policy.max_attempts, last_error=error
    )


async def _attempt(
    client: httpx.AsyncClient,
    endpoint: WebhookEndpoint,
    event: BatchEvent,
    body: bytes,
    timeout_s: float,
) -> str:
    """One signed POST within ``timeout_s`` in all; the reason it failed, or "" when the
    endpoint took the event."""
    auth = httpx.BasicAuth(*endpoint.auth) if endpoint.auth else httpx.USE_CLIENT_DEFAULT
    headers = endpoint.headers(event.id, body)
    try:
        async with asyncio.timeout(timeout_s):
            request = client.stream("POST", endpoint.url, content=body, headers=headers, auth=auth)
            async with request as response:
                if response.is_success:
                    return ""
                answer = await _read_at_most(response, ERROR_BODY_BYTES)
    except TimeoutError:
        metrics.WEBHOOK_ATTEMPTS_FAILED.labels("AttemptTimeout").inc()
        return f"AttemptTimeout: no answer within {timeout_s:g} s"
    except httpx.HTTPError as error:
        metrics.WEBHOOK_ATTEMPTS_FAILED.labels(type(error).__name__).inc()
        return f"{type(error).__name__}: {error}"[:500]
    metrics.WEBHOOK_ATTEMPTS_FAILED.labels(str(response.status_code)).inc()
    text = answer.decode("utf-8", errors="replace")[:ERROR_BODY_CHARS]
    return f"HTTP {response.status_code}: {text}"


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body as sent (never inflated); the rest is left
    unread."""
    if response.is_stream_consumed:  # a response built in memory (a test's transport)
        return response.content[:limit]
    read = bytearray()
    async for chunk in response.aiter_raw():
        read += chunk[: limit - len(read)]
        if len(read) >= limit:
            break
    return bytes(read)
