"""Requests per minute: per API key on ``/v1`` and per client address on the login form.

``limits``' sliding-window counter over ``SharedCounts``, so a limit weighs every replica's
requests (``rate_sync`` carries them); the window is a minute, weighted across the minute
boundary, as OpenAI's requests-per-minute limits are. A request past its key's limit is
answered 429 in OpenAI's shape with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers,
which every answer under a limit carries, so a client can pace itself before it is refused.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from http import HTTPStatus

from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_stream.contracts import DEFAULT_PROJECT
from llm_stream.gateway.auth_limit import client_key
from llm_stream.gateway.callers import CALLER_STATE, Caller
from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.keyring import KeyRing
from llm_stream.gateway.rate_counts import SharedCounts
from llm_stream.ops import metrics

#: The headers every answer under a limit carries (a browser page may read them: CORS).
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "retry-after",
)
#: The refusals counter's project for the login form (no key yet, so no project).
LOGIN_PROJECT = "-"


def _duration(seconds: float) -> str:
    """OpenAI's form of a reset time: ``1s``, ``6m0s``."""
    whole = max(1, math.ceil(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclass(frozen=True)
class RateDecision:
    """Whether a request passed its limit, and what is left of the window."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.reset_s))

    def headers(self) -> dict[str, str]:
        found = {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": _duration(self.reset_s),
        }
        if not self.allowed:
            found["Retry-After"] = str(self.retry_after_s)
        return found


class RateLimits:
    """The gateway's request counts and the decisions on them."""

    def __init__(self, counts: SharedCounts | None = None) -> None:
        self.counts = counts if counts is not None else SharedCounts()
        self._limiter = SlidingWindowCounterRateLimiter(self.counts)

    async def hit(self, scope: str, who: str, per_minute: int) -> RateDecision:
        """Count a request of ``who`` under ``scope``'s limit of ``per_minute``; refused
        requests are not counted (a client that keeps knocking is let in as its window
        slides)."""
        item = RateLimitItemPerMinute(per_minute)
        allowed = await self._limiter.hit(item, scope, who)
        stats = await self._limiter.get_window_stats(item, scope, who)
        reset_s = max(0.0, stats.reset_time - time.time())
        return RateDecision(allowed, per_minute, stats.remaining, reset_s)

    async def login(self, address: str | None, per_minute: int) -> RateDecision | None:
        """A sign-in attempt from ``address``; None when the form has no limit."""
        if not per_minute:
            return None
        decision = await self.hit("login", client_key(address), per_minute)
        if not decision.allowed:
            metrics.GATEWAY_QUOTA_REFUSALS.labels(LOGIN_PROJECT, "rate_limit_exceeded").inc()
        return decision


def rate_limit_exceeded(decision: RateDecision) -> GatewayError:
    """OpenAI's 429 for requests past a limit."""
    return GatewayError(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"Rate limit reached for requests. Limit: {decision.limit} / min. Please try again "
        f"in {decision.retry_after_s}s.",
        code="rate_limit_exceeded",
        type="requests",
        headers=decision.headers(),
    )


class RequestRateLimit:
    """Counts each ``/v1`` request against its key's requests per minute (set by the settings
    or the key's project); runs after ``ApiKeyAuth``, which names the key. A gateway without
    keys counts per client address."""

    def __init__(self, app: ASGIApp, limits: RateLimits, keys: KeyRing) -> None:
        self.app = app
        self._limits = limits
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        caller = scope.get("state", {}).get(CALLER_STATE)
        project = caller.project if isinstance(caller, Caller) else DEFAULT_PROJECT
        per_minute = self._keys.limits().requests_per_minute_of(project)
        if not per_minute:
            await self.app(scope, receive, send)
            return
        if isinstance(caller, Caller) and caller.key_id:
            who = f"key:{caller.key_id}"
        else:
            client = scope.get("client")
            who = f"address:{client_key(str(client[0]) if client else None)}"
        decision = await self._limits.hit("api", who, per_minute)
        if not decision.allowed:
            metrics.GATEWAY_QUOTA_REFUSALS.labels(project, "rate_limit_exceeded").inc()
            await rate_limit_exceeded(decision).response()(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(decision.headers())
            await send(message)

        await self.app(scope, receive, with_headers)
