"""The OAUTHBEARER token providers: the OIDC client credentials grant against a real HTTP
token endpoint on loopback, token caching until shortly before expiry, and errors that name
the endpoint but never the secret; MSK IAM signs a token offline from AWS credentials."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

import pytest
from pydantic import SecretStr

from llm_stream.kafka.oauth import (
    REFRESH_MARGIN_S,
    MskIamTokenProvider,
    OAuthTokenError,
    OidcTokenProvider,
)

SECRET = "client-secret-9f3a"


class TokenEndpoint(BaseHTTPRequestHandler):
    """Grants ``tok-<n>`` for 600 s to client ``llm-stream`` with ``SECRET``; counts grants."""

    grants: list[dict[str, list[str]]] = []  # noqa: RUF012 (one endpoint per test module)

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        expected = base64.b64encode(f"llm-stream:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {"error": "invalid_client", "error_description": "bad secret"})
            return
        TokenEndpoint.grants.append(form)
        self._answer(200, {"access_token": f"tok-{len(self.grants)}", "expires_in": 600})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads the grants, not the access log."""


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_oidc_token_is_fetched_once_and_renewed_before_it_expires(token_url: str) -> None:
    TokenEndpoint.grants.clear()
    clock = Clock()
    provider = OidcTokenProvider(
        token_url, "llm-stream", SecretStr(SECRET), "kafka.write", clock=clock
    )
    assert [await provider.token() for _ in range(3)] == ["tok-1"] * 3
    assert TokenEndpoint.grants == [
        {"grant_type": ["client_credentials"], "scope": ["kafka.write"]}
    ]
    clock.now += 600 - REFRESH_MARGIN_S - 1
    assert await provider.token() == "tok-1"
    clock.now += 2  # inside the margin: replaced before it expires
    assert await provider.token() == "tok-2"
    assert SECRET not in repr(provider)


async def test_a_refused_client_gets_the_endpoints_reason_without_the_secret(
    token_url: str,
) -> None:
    wrong = "wrong-secret-77"
    provider = OidcTokenProvider(token_url, "llm-stream", SecretStr(wrong))
    with pytest.raises(OAuthTokenError) as refused:
        await provider.token()
    message = str(refused.value)
    assert "HTTP 401" in message
    assert "bad secret" in message
    assert token_url in message
    assert wrong not in message


async def test_an_unreachable_token_endpoint_is_named() -> None:
    provider = OidcTokenProvider("http://127.0.0.1:9/token", "llm-stream", SecretStr(SECRET))
    with pytest.raises(OAuthTokenError, match=r"127\.0\.0\.1:9/token unreachable") as refused:
        await provider.token()
    assert SECRET not in str(refused.value)


async def test_msk_iam_signs_a_kafka_connect_token_for_the_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    provider = MskIamTokenProvider("eu-west-1")
    token = await provider.token()
    url = unquote(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/")
    assert "Action=kafka-cluster:Connect" in url
    assert "X-Amz-Credential=AKIDEXAMPLE/" in url
    assert await provider.token() == token  # cached: valid for 15 minutes
