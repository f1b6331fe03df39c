"""The gateway around its routes: API keys, body limits, OpenAI's error shape for every error,
the ops endpoints, metrics by route, /docs, and where it listens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from llm_stream.curation.judgements import MemoryJudgements
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import bind_host, create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream, chat_line, jsonl

KEY = "sk-test-key-0123456789abcdef012345"
OTHER_KEY = "sk-other-key-0123456789abcdef01234"


@pytest.fixture
def guarded(settings: Settings, store: LocalFileStore) -> Iterator[TestClient]:
    keyed = settings.with_overrides(gateway_api_keys=[SecretStr(OTHER_KEY), SecretStr(KEY)])
    with TestClient(create_app(keyed, store=store, stream=FakeBatchStream())) as client:
        yield client


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_with_keys_a_missing_or_wrong_key_gets_openais_401(guarded: TestClient) -> None:
    assert _error(guarded.get("/v1/files"), 401)["code"] is None
    wrong = guarded.get("/v1/files", headers={"Authorization": "Bearer sk-wrong"})
    error = _error(wrong, 401)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert "sk-wrong" not in error["message"]  # a key is never echoed
    basic = guarded.get("/v1/files", headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401
    right = guarded.get("/v1/files", headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code == 200


def test_an_upload_without_a_key_is_refused_before_its_body_is_read(
    guarded: TestClient, store: LocalFileStore
) -> None:
    response = guarded.post(
        "/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"}
    )
    _error(response, 401)
    assert store.index.page(purpose=None, descending=True, after=None, limit=9) == []


def test_ops_endpoints_and_docs_need_no_key(guarded: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path


def test_without_keys_every_request_passes(client: TestClient) -> None:
    assert client.get("/v1/batches").status_code == 200


def test_readyz_reports_the_streams_problem(client: TestClient, stream: FakeBatchStream) -> None:
    assert client.get("/readyz").status_code == 200
    stream.not_ready = "batch status view stopped"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "batch status view stopped" in response.text


class _BehindJudgements(MemoryJudgements):
    def __init__(self) -> None:
        super().__init__()
        self.behind: str | None = None

    def problem(self) -> str | None:
        return self.behind


def test_readyz_reports_the_judgements_problem(settings: Settings, store: LocalFileStore) -> None:
    judgements = _BehindJudgements()
    app = create_app(settings, store=store, stream=FakeBatchStream(), judgements=judgements)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        judgements.behind = "still reading the history of llm-stream.judgements"
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "still reading the history of llm-stream.judgements" in response.text


def test_a_json_body_over_the_limit_is_413(settings: Settings, store: LocalFileStore) -> None:
    small = settings.with_overrides(gateway_max_body_bytes=1024)
    with TestClient(create_app(small, store=store, stream=FakeBatchStream())) as client:
        body = {"input_file_id": "x" * 2000, "endpoint": "/v1/completions"}
        _error(client.post("/v1/batches", json=body), 413)

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"input_file_id": "'
            yield b"x" * 2000
            yield b'"}'

        streamed = client.post(
            "/v1/batches", content=chunked(), headers={"content-type": "application/json"}
        )
        _error(streamed, 413)


def test_unknown_routes_and_methods_answer_in_openais_shape(client: TestClient) -> None:
    assert "Invalid URL" in _error(client.get("/v1/embeddings"), 404)["message"]
    _error(client.put("/v1/files"), 405)


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    """Two routes share ``/v1/files`` (GET and POST): ``Allow`` names both, not the first's."""
    for path, allowed in (("/v1/files", "GET, POST"), ("/v1/files/f", "DELETE, GET")):
        refused = client.request("OPTIONS", path)
        _error(refused, 405)
        assert refused.headers["allow"] == allowed


def test_a_request_without_its_json_body_is_400_saying_so(client: TestClient) -> None:
    error = _error(client.post("/v1/batches"), 400)
    assert (error["param"], error["code"]) == (None, None)
    assert "no body" in error["message"]


def test_an_unexpected_failure_is_a_500_server_error(
    settings: Settings, store: LocalFileStore
) -> None:
    class Broken(FakeBatchStream):
        async def page(self, *, limit: int, after: str | None) -> Any:
            raise RuntimeError("boom")

    app = create_app(settings, store=store, stream=Broken())
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/batches")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def _requests_counted(route: str, status: str) -> float:
    labels = {"route": route, "method": "GET", "status_code": status}
    return REGISTRY.get_sample_value("llm_stream_gateway_requests_total", labels) or 0.0


def test_metrics_count_requests_by_route_template_and_upload_bytes(client: TestClient) -> None:
    before = _requests_counted("/v1/files/{file_id}", "404")
    unmatched = _requests_counted("unmatched", "404")
    uploaded_before = REGISTRY.get_sample_value("llm_stream_gateway_upload_bytes_total") or 0.0
    content = jsonl([chat_line("a")])
    client.post("/v1/files", files={"file": ("a.jsonl", content)}, data={"purpose": "batch"})
    client.get("/v1/files/file-nothing")
    client.get("/v1/files/file-other")
    client.get("/no/such/route")

    assert _requests_counted("/v1/files/{file_id}", "404") == before + 2
    assert _requests_counted("unmatched", "404") == unmatched + 1
    uploaded = REGISTRY.get_sample_value("llm_stream_gateway_upload_bytes_total") or 0.0
    assert uploaded == uploaded_before + len(content)
    text = client.get("/metrics").text
    assert "llm_stream_gateway_requests_total" in text


def test_the_method_label_is_one_of_a_known_few(client: TestClient) -> None:
    """A client may send any method token: each must not become a series of its own."""
    for method in ("GET", "FETCH-1", "FETCH-2", "get"):
        client.request(method, "/v1/files")
    families = [m for m in REGISTRY.collect() if m.name == "llm_stream_gateway_requests"]
    methods = {sample.labels["method"] for sample in families[0].samples}
    assert "GET" in methods
    assert "other" in methods
    assert not methods & {"FETCH-1", "FETCH-2", "get"}


def test_the_openapi_document_lists_the_routes_and_the_bearer_key(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert {
        "/v1/files",
        "/v1/files/{file_id}",
        "/v1/files/{file_id}/content",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/batches/{batch_id}/cancel",
    } <= set(document["paths"])
    assert "HTTPBearer" in document["components"]["securitySchemes"]


def test_without_keys_the_gateway_listens_on_loopback_unless_told(settings: Settings) -> None:
    assert bind_host(settings) == "127.0.0.1"
    assert bind_host(settings.with_overrides(gateway_host="0.0.0.0")) == "0.0.0.0"
    keyed = settings.with_overrides(gateway_api_keys=[SecretStr(KEY)])
    assert bind_host(keyed) == "0.0.0.0"


def test_keys_come_from_the_environment_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = "sk-a" + "1" * 30, "sk-b" + "2" * 30
    monkeypatch.setenv("LLM_STREAM_GATEWAY_API_KEYS", f"{first}, {second}")
    keys = Settings().gateway_api_keys
    assert [key.get_secret_value() for key in keys] == [first, second]
    assert first not in repr(Settings())


def test_a_key_shorter_than_32_characters_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_GATEWAY_API_KEYS", f"{KEY},sk-short-key-31-characters-long")
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert "key 2 of 2 is shorter than 32 characters" in message
    assert "sk-short" not in message
    assert KEY not in message
    monkeypatch.setenv("LLM_STREAM_GATEWAY_API_KEYS", "sk-exactly-32-characters-long-00")
    assert len(Settings().gateway_api_keys) == 1


@pytest.fixture
def limited(settings: Settings, store: LocalFileStore) -> Iterator[TestClient]:
    keyed = settings.with_overrides(gateway_api_keys=[SecretStr(KEY)], gateway_auth_max_failures=3)
    with TestClient(create_app(keyed, store=store, stream=FakeBatchStream())) as client:
        yield client


def test_too_many_wrong_keys_from_an_address_get_openais_429_with_retry_after(
    limited: TestClient,
) -> None:
    right = {"Authorization": f"Bearer {KEY}"}
    for _ in range(20):  # right keys and missing ones are not failures
        assert limited.get("/v1/files", headers=right).status_code == 200
        assert limited.get("/v1/files").status_code == 401
    wrong = {"Authorization": "Bearer sk-guess-0123456789abcdef0123456789"}
    for _ in range(3):
        assert _error(limited.get("/v1/files", headers=wrong), 401)["code"] == "invalid_api_key"
    held = limited.get("/v1/files", headers=wrong)
    error = _error(held, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert 0 < int(held.headers["Retry-After"]) <= 60
    # Held back, a key is not even compared: a right guess would otherwise show.
    assert _error(limited.get("/v1/files", headers=right), 429)["code"] == "rate_limit_exceeded"
    other_client = TestClient(limited.app, client=("198.51.100.7", 50000))
    assert other_client.get("/v1/files", headers=right).status_code == 200
