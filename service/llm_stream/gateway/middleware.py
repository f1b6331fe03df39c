"""What every request passes before a route sees it: metrics, the API key, the size limit.

Plain ASGI middleware rather than FastAPI dependencies, because FastAPI reads (and spools) a
request's body before it resolves dependencies: a key checked there would let anyone make the
gateway receive a 200 MB upload first, and a size checked there would come too late.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.callers import Caller, set_caller
from llm_stream.gateway.errors import GatewayError, too_large, too_many_failures, unauthorized
from llm_stream.gateway.keyring import KeyRing
from llm_stream.ops import metrics

#: Paths that need a key; the ops endpoints (/healthz, /readyz, /metrics) and /docs do not.
PROTECTED_PREFIX = "/v1/"
UPLOAD_PATH = "/v1/files"
#: Room for a multipart body's boundaries, part headers and its ``purpose`` field.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


#: Methods counted under their own name; any other (a client may send any token) is "other".
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The metrics label of an HTTP method: one of a fixed few, so series stay bounded."""
    return method if method in COUNTED_METHODS else "other"


class RequestMetrics:
    """Counts every answer by route template (never by raw path: ids would explode the series)
    and method (a known one, else "other"), and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = method_label(scope["method"])
            metrics.GATEWAY_REQUESTS.labels(route, method, str(status)).inc()
            metrics.GATEWAY_REQUEST_DURATION.labels(route, method).observe(
                time.perf_counter() - started
            )


class ApiKeyAuth:
    """Bearer keys, looked up by the key ring (``keyring``); the caller found travels in the
    request's scope state (``callers``). No keys configured: every request passes. A client
    address that sent too many wrong keys is answered 429 (``auth_limit``)."""

    def __init__(
        self, app: ASGIApp, keys: KeyRing | Sequence[SecretStr], failures: FailedAuthLimiter
    ) -> None:
        """``keys``: the gateway's key ring, or a fixed list of admin keys."""
        self.app = app
        self._keys = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        self._failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protected = scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX)
        if protected and not self._keys.open:
            address = client_address(scope)
            found = self._caller(address, dict(scope["headers"]).get(b"authorization"))
            if isinstance(found, GatewayError):
                await found.response()(scope, receive, send)
                return
            set_caller(scope.setdefault("state", {}), found)
        await self.app(scope, receive, send)

    def _caller(self, address: str | None, header: bytes | None) -> Caller | GatewayError:
        scheme, _, token = (header or b"").partition(b" ")
        if not header or scheme.lower() != b"bearer" or not token.strip():
            return unauthorized(
                "You didn't provide an API key. Send it in the Authorization header as "
                "'Authorization: Bearer YOUR_KEY'.",
                code=None,
            )
        retry_after_s = self._failures.retry_after(address)
        if retry_after_s is not None:
            return too_many_failures(retry_after_s)
        caller = self._keys.caller(token.strip())
        if caller is not None:
            metrics.GATEWAY_PROJECT_REQUESTS.labels(caller.project).inc()
            return caller
        self._failures.failed(address)
        return unauthorized("Incorrect API key provided.", code="invalid_api_key")


def client_address(scope: Scope) -> str | None:
    """The client's address as the server saw it (uvicorn's proxy headers applied)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def is_a_key(token: bytes, keys: Sequence[bytes]) -> bool:
    """Whether ``token`` is one of ``keys`` (the API's bearer check, and the web page's login).

    Every key is compared, in constant time, so the time taken does not tell which came close.
    """
    matches = [secrets.compare_digest(token, key) for key in keys]
    return any(matches)


class BodySizeLimit:
    """Refuses a body over its limit: at once from its Content-Length, else (chunked) as soon
    as the bytes received pass it. Uploads get the file limit plus multipart overhead; the
    exact file size is checked again by the upload route."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self._max_body = max_body_bytes
        self._max_upload = max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"].rstrip("/") == UPLOAD_PATH and scope["method"] == "POST"
        limit = self._max_upload if upload else self._max_body
        error = too_large(f"The request body is larger than {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error.response()(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise error  # an HTTPException: FastAPI answers it even while parsing a form
            return message

        await self.app(scope, counted, send)
