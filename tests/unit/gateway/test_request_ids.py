"""``X-Request-ID`` on every answer (the caller's when usable, else a new one), on the request's
log lines, and CORS only for the origins the settings name."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.request_ids import RequestIds, request_id_of
from llm_stream.ops.logs import JsonFormatter
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

KEY = "k" * 32
ORIGIN = "https://app.example.com"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    """A gateway with an API key and one allowed browser origin."""
    settings = Settings(
        output_dir=tmp_path / "batches", gateway_api_keys=KEY, gateway_cors_origins=ORIGIN
    )
    app = create_app(settings, store=LocalFileStore(settings.output_dir), stream=FakeBatchStream())
    with TestClient(app) as test_client:
        yield test_client


def test_a_usable_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id_of("client-req_7:a.b") == "client-req_7:a.b"
    for unusable in (None, "", "has space", "x" * 129, "new\nline", "ünï"):
        made = request_id_of(unusable)
        assert made.startswith("req_")
        assert len(made) == 36
    assert request_id_of(None) != request_id_of(None)


def test_every_answer_names_its_request_refusals_included(client: TestClient) -> None:
    answered = client.get("/v1/batches", headers={"x-request-id": "caller-1"})
    assert answered.status_code == 200
    assert answered.headers["x-request-id"] == "caller-1"
    missing = client.get("/v1/batches/nothing")
    assert missing.status_code == 404
    assert missing.headers["x-request-id"].startswith("req_")
    bad = client.get("/v1/batches", headers={"x-request-id": "two words"})
    assert bad.headers["x-request-id"].startswith("req_")


def test_an_unauthorised_answer_names_its_request_too(guarded: TestClient) -> None:
    refused = guarded.get("/v1/batches")
    assert refused.status_code == 401
    assert refused.headers["x-request-id"].startswith("req_")


def test_the_requests_log_lines_carry_its_id_and_a_server_error_is_logged() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        logging.getLogger("llm_stream.gateway.probe").warning("inside the request")
        await PlainTextResponse("broken", status_code=503)(scope, receive, send)

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llm_stream.gateway")
    logger.addHandler(handler)
    try:
        test_client = TestClient(RequestIds(failing))  # no lifespan: an HTTP-only app
        answered = test_client.get("/v1/x", headers={"x-request-id": "caller-logs"})
        logger.warning("after the request")
    finally:
        logger.removeHandler(handler)
    assert answered.headers["x-request-id"] == "caller-logs"
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line.get("request_id")) for line in lines] == [
        ("inside the request", "caller-logs"),
        ("answered 503 to /v1/x", "caller-logs"),
        ("after the request", None),
    ]


def test_without_origins_no_cross_origin_answer(client: TestClient) -> None:
    answered = client.get("/v1/batches", headers={"origin": ORIGIN})
    assert answered.status_code == 200
    assert "access-control-allow-origin" not in answered.headers


def test_an_allowed_origin_gets_its_preflight_without_a_key_and_others_do_not(
    guarded: TestClient,
) -> None:
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST"}
    allowed = guarded.options("/v1/batches", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    stranger = guarded.options(
        "/v1/batches", headers={**preflight, "origin": "https://evil.example"}
    )
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    call = guarded.get("/v1/batches", headers={"origin": ORIGIN, "authorization": f"Bearer {KEY}"})
    assert call.status_code == 200
    assert call.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in call.headers["access-control-expose-headers"].lower()
