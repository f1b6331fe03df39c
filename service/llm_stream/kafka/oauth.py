"""Token providers for SASL/OAUTHBEARER: Amazon MSK's IAM auth and OIDC client credentials.

aiokafka asks its ``sasl_oauth_token_provider`` for a token on every new connection; both
providers cache the token until shortly before it expires, so a process with many connections
fetches (or signs) one token per lifetime, and never logs or shows it or the client secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka.abc import AbstractTokenProvider
from pydantic import SecretStr

from llm_stream.errors import LlmStreamError

#: A token is replaced this long before it expires, so no connection starts with a stale one.
REFRESH_MARGIN_S = 60.0
#: Lifetime assumed when a token endpoint gives no ``expires_in``.
DEFAULT_LIFETIME_S = 300.0


class OAuthTokenError(LlmStreamError, RuntimeError):
    """A token could not be obtained; the message names the endpoint, never a secret."""


class _CachedToken:
    """One token and when to replace it, shared by concurrent callers behind one lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._value: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> str:
        async with self._lock:
            if self._value is None or self._clock() >= self._refresh_at:
                value, lifetime_s = await fetch()
                self._value = value
                self._refresh_at = self._clock() + max(0.0, lifetime_s - REFRESH_MARGIN_S)
            return self._value


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """Amazon MSK IAM auth: a SigV4-signed token from AWS's signer, with credentials from the
    AWS provider chain (environment, profile, web identity, instance role)."""

    def __init__(self, region: str, *, clock: Callable[[], float] = time.time) -> None:
        self.region = region
        self._clock = clock
        self._cache = _CachedToken(clock)

    async def token(self) -> str:
        return await self._cache.get(self._sign)

    async def _sign(self) -> tuple[str, float]:
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError as error:
            raise OAuthTokenError(
                "sasl_oauth_provider=msk_iam needs the aws-msk-iam-sasl-signer-python package "
                "(pip install 'llm-stream[msk]')"
            ) from error
        # Resolving credentials may read files or call the instance metadata service.
        token, expiry_ms = await asyncio.to_thread(
            MSKAuthTokenProvider.generate_auth_token, self.region
        )
        return str(token), expiry_ms / 1000 - self._clock()

    def __repr__(self) -> str:
        return f"MskIamTokenProvider(region={self.region!r})"


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAuth 2.0 client credentials grant (RFC 6749, 4.4) against an OIDC token endpoint,
    authenticating the client with HTTP Basic (``client_secret_basic``)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 10.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self._transport = transport
        self._timeout_s = timeout_s
        self._cache = _CachedToken(clock)

    async def token(self) -> str:
        return await self._cache.get(self._fetch)

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        auth = httpx.BasicAuth(self.client_id, self._client_secret.get_secret_value())
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s) as http:
            try:
                response = await http.post(self.token_url, data=form, auth=auth)
            except httpx.HTTPError as error:
                raise OAuthTokenError(
                    f"token endpoint {self.token_url} unreachable: {type(error).__name__}"
                ) from None
        body = _json_object(response)
        if response.status_code != 200 or "access_token" not in body:
            reason = body.get("error_description") or body.get("error") or "no access_token"
            raise OAuthTokenError(
                f"token endpoint {self.token_url} refused client {self.client_id!r}: "
                f"HTTP {response.status_code}, {reason}"
            )
        lifetime = body.get("expires_in")
        lifetime_s = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME_S
        return str(body["access_token"]), lifetime_s

    def __repr__(self) -> str:
        return f"OidcTokenProvider(token_url={self.token_url!r}, client_id={self.client_id!r})"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
