"""What a request passes before a route sees it, on a bare app: the API key (401, then 429 for an
address that keeps guessing), the body size limit (413 before the body is read whole) and the
metrics, whose labels stay bounded."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr

from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.middleware import (
    MULTIPART_OVERHEAD_BYTES,
    ApiKeyAuth,
    BodySizeLimit,
    RequestMetrics,
    client_address,
    is_a_key,
    method_label,
)

KEY = "k" * 32


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/echo/{name}")
    async def echo(name: str, request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.exception_handler(GatewayError)
    async def answer(request: Request, error: GatewayError) -> object:
        return error.response()

    return app


def _keyed(failures: FailedAuthLimiter, keys: list[str]) -> TestClient:
    app = _app()
    app.add_middleware(ApiKeyAuth, keys=[SecretStr(key) for key in keys], failures=failures)
    return TestClient(app)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_method_label_is_a_known_method_or_other() -> None:
    assert [method_label(m) for m in ("GET", "POST", "DELETE")] == ["GET", "POST", "DELETE"]
    assert [method_label(m) for m in ("get", "FETCH", "")] == ["other"] * 3


def test_a_key_is_one_of_the_keys_exactly() -> None:
    keys = [b"a" * 32, b"b" * 32]
    assert is_a_key(b"b" * 32, keys)
    assert not is_a_key(b"b" * 31, keys)
    assert not is_a_key(b"a" * 32, [])


def test_the_client_address_is_the_servers_view_of_it() -> None:
    assert client_address({"client": ("192.0.2.1", 5000)}) == "192.0.2.1"
    assert client_address({}) is None


def test_with_no_keys_configured_an_api_route_needs_none() -> None:
    with _keyed(FailedAuthLimiter(3, 60.0), []) as client:
        assert client.post("/v1/echo/a", content=b"xy").json() == {"received": 2}


def test_an_api_route_needs_a_bearer_key_and_an_ops_route_does_not() -> None:
    with _keyed(FailedAuthLimiter(3, 60.0), [KEY]) as client:
        missing = client.post("/v1/echo/a")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] is None
        assert "Authorization: Bearer" in missing.json()["error"]["message"]
        assert client.post("/v1/echo/a", headers={"Authorization": KEY}).status_code == 401
        assert client.post("/v1/echo/a", headers=_bearer(KEY)).status_code == 200
        assert client.post("/v1/echo/a", headers={"Authorization": f"bearer {KEY}"}).is_success
        assert client.get("/healthz").status_code == 200


def test_wrong_keys_are_counted_per_address_until_it_is_held_back() -> None:
    failures = FailedAuthLimiter(2, 60.0)
    with _keyed(failures, [KEY]) as client:
        for _ in range(2):
            wrong = client.post("/v1/echo/a", headers=_bearer("guess"))
            assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
        held = client.post("/v1/echo/a", headers=_bearer(KEY))  # even the right key now waits
        assert held.status_code == 429
        assert int(held.headers["retry-after"]) > 0
    assert failures.retry_after("testclient") is not None


def _limited(max_body: int, max_upload: int) -> TestClient:
    app = _app()
    app.add_middleware(BodySizeLimit, max_body_bytes=max_body, max_upload_bytes=max_upload)
    return TestClient(app)


def test_a_declared_body_over_the_limit_is_refused_with_413() -> None:
    with _limited(10, 10) as client:
        assert client.post("/v1/echo/a", content=b"x" * 10).status_code == 200
        refused = client.post("/v1/echo/a", content=b"x" * 11)
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "request_too_large"


def test_a_chunked_body_is_refused_once_its_bytes_pass_the_limit() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 8
        yield b"x" * 8

    with _limited(10, 10) as client:
        assert client.post("/v1/echo/a", content=chunks()).status_code == 413


def test_an_upload_gets_the_file_limit_plus_room_for_its_multipart_framing() -> None:
    with _limited(10, 100) as client:
        fits = b"x" * (100 + MULTIPART_OVERHEAD_BYTES)
        assert client.post("/v1/files", content=fits).status_code == 200
        assert client.post("/v1/files", content=fits + b"x").status_code == 413
        assert client.post("/v1/echo/a", content=b"x" * 11).status_code == 413


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status_code": status}
    return REGISTRY.get_sample_value("llm_stream_gateway_requests_total", labels) or 0.0


def test_answers_are_counted_by_route_template_not_by_path() -> None:
    app = _app()
    app.add_middleware(RequestMetrics)
    before = _count("/v1/echo/{name}", "POST", "200"), _count("unmatched", "GET", "404")
    with TestClient(app) as client:
        client.post("/v1/echo/one")
        client.post("/v1/echo/two")
        client.get("/nowhere")
    after = _count("/v1/echo/{name}", "POST", "200"), _count("unmatched", "GET", "404")
    assert (after[0] - before[0], after[1] - before[1]) == (2.0, 1.0)
