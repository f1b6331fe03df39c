"""The real engine's own part, with no model loaded: it refuses what the batch rules refuse
before any route, routes the rest, turns vLLM's timings into seconds, and tells a dead engine
from a failed request."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pydantic
import pytest

from llm_stream.batch import request_line
from llm_stream.contracts import SUPPORTED_ENDPOINTS
from llm_stream.engine.media_policy import MediaPolicy
from llm_stream.engine.protocol import EngineRequest, EngineUnavailableError
from llm_stream.engine.vllm_engine import VllmEngine
from llm_stream.engine.vllm_routes import Route

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class _Routes(dict[str, Any]):
    def __missing__(self, url: str) -> Any:
        raise AssertionError(f"the engine routed {url!r}, which the rules refuse")


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/chat/completions", CHAT),
        ("post", "/v1/chat/completions", CHAT),
        ("POST", "/v1/moderations", CHAT),
        ("POST", "/v1/chat/completions", {**CHAT, "stream": True}),
    ],
)
async def test_the_engine_refuses_what_the_rules_refuse(
    method: str, url: str, body: dict[str, Any]
) -> None:
    engine = VllmEngine.__new__(VllmEngine)  # no vLLM: refusals are decided before any route
    engine._routes = _Routes()
    reply = await engine._respond(EngineRequest(method=method, url=url, body=body))
    assert reply == request_line.serving_refusal(method, url, body)
    assert reply.status_code in (400, 404, 405)


async def test_the_engine_routes_what_the_rules_accept() -> None:
    engine = VllmEngine.__new__(VllmEngine)
    unserved = Route(pydantic.TypeAdapter(dict[str, Any]), None)
    engine._routes = _Routes(dict.fromkeys(SUPPORTED_ENDPOINTS, unserved))
    engine._engine = SimpleNamespace(errored=False)
    engine._media = MediaPolicy()
    for url in SUPPORTED_ENDPOINTS:
        reply = await engine._respond(EngineRequest(method="POST", url=url, body={}))
        assert reply.status_code == 404
        assert request_line.error_message(reply) == f"The model does not support {url}."


class _Answer(pydantic.BaseModel):
    id: str
    metrics: dict[str, Any] | None = None


class _Engine:
    """Stands for vLLM's engine client: alive or dead, healthy or not."""

    def __init__(self, *, errored: bool = False, healthy: bool = True) -> None:
        self.errored, self.healthy = errored, healthy
        self.shut_down_with: list[float] = []
        self.vllm_config = SimpleNamespace(shutdown_timeout=3.0)

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("engine core died")

    def shutdown(self, timeout: float) -> None:
        self.shut_down_with.append(timeout)


def _engine(handler: Any, client: _Engine | None = None, **kwargs: Any) -> VllmEngine:
    state = SimpleNamespace(openai_serving_completion=SimpleNamespace(create_completion=handler))
    return VllmEngine(client or _Engine(), state, **kwargs)


def _completion(**body: Any) -> EngineRequest:
    return EngineRequest(
        method="POST", url="/v1/completions", body={"model": "m", "prompt": "hi", **body}
    )


async def _answered(parsed: Any, raw_request: Any) -> _Answer:
    metrics = {"queue_time_ms": 5, "time_to_first_token_ms": 250, "generation_time_ms": None}
    return _Answer(id="cmpl-1", metrics=metrics)


async def test_vllms_timings_are_read_in_seconds_and_kept_in_the_body_if_asked() -> None:
    reply = await _engine(_answered).serve(_completion())
    assert (reply.response.status_code, reply.response.request_id) == (200, "cmpl-1")
    assert reply.timings is not None
    timings = reply.timings
    assert (timings.queue, timings.time_to_first_token, timings.generation) == (0.005, 0.25, None)
    assert reply.response.body is not None
    assert "metrics" in reply.response.body
    dropped = await _engine(_answered, keep_metrics_in_body=False).serve(_completion())
    assert dropped.response.body is not None
    assert "metrics" not in dropped.response.body
    assert dropped.timings == timings


async def test_a_body_vllm_refuses_is_its_400_and_reaches_no_handler() -> None:
    async def never(parsed: Any, raw_request: Any) -> _Answer:
        raise AssertionError("the handler ran")

    reply = await _engine(never).serve(_completion(max_tokens="many"))
    assert reply.response.status_code == 400
    assert reply.response.body is not None
    assert "max_tokens" in json.dumps(reply.response.body)


async def _failing(parsed: Any, raw_request: Any) -> _Answer:
    raise RuntimeError("a bug in one request")


async def test_a_request_that_fails_on_a_live_engine_is_answered_with_an_error() -> None:
    reply = await _engine(_failing).serve(_completion())
    assert reply.response.status_code >= 400
    assert reply.response.body is not None
    assert "a bug in one request" in json.dumps(reply.response.body)


async def test_a_failure_on_a_dead_engine_is_the_engine_being_unavailable() -> None:
    with pytest.raises(EngineUnavailableError, match="vLLM engine is dead"):
        await _engine(_failing, _Engine(errored=True)).serve(_completion())


async def test_an_unhealthy_engine_is_unavailable() -> None:
    await _engine(_answered).check_health()
    with pytest.raises(EngineUnavailableError, match="engine core died"):
        await _engine(_answered, _Engine(healthy=False)).check_health()


async def test_closing_shuts_vllm_down_with_its_timeout_then_releases_the_orphan_guard() -> None:
    released: list[bool] = []
    client = _Engine()
    guard = SimpleNamespace(release=lambda: released.append(bool(client.shut_down_with)))
    state = SimpleNamespace(orphan_guard=guard)
    await VllmEngine(client, state).close()
    assert client.shut_down_with == [3.0]
    assert released == [True]  # after the shutdown


class _Aliased(pydantic.BaseModel):
    id: str
    schema_: str = pydantic.Field(alias="schema")


async def test_each_endpoint_goes_to_its_serving_object_and_the_rest_are_not_served() -> None:
    """Responses bodies are dumped by alias (as vLLM's router does); score and rerank, on every
    path vLLM's server takes, reach its scoring object; what no object serves is a 404."""
    from starlette.responses import JSONResponse

    seen: list[str] = []

    async def responses(parsed: Any, raw_request: Any) -> _Aliased:
        seen.append(type(parsed).__name__)
        return _Aliased(id="resp_1", schema="s")

    async def scores(parsed: Any, raw_request: Any) -> JSONResponse:
        seen.append(type(parsed).__name__)
        return JSONResponse({"id": "score-1", "object": "list", "data": []})

    state = SimpleNamespace(
        openai_serving_responses=SimpleNamespace(create_responses=responses),
        serving_scores=scores,
    )
    engine = VllmEngine(_Engine(), state)
    assert set(engine.served_endpoints) == {
        "/v1/responses",
        "/score",
        "/v1/score",
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
    }
    reply = await engine.serve(
        EngineRequest(method="POST", url="/v1/responses", body={"model": "m", "input": "hi"})
    )
    assert reply.response.body == {"id": "resp_1", "schema": "s"}
    score = {"model": "m", "queries": "q", "documents": ["a", "b"]}
    for url in ("/score", "/v1/score"):
        reply = await engine.serve(EngineRequest(method="POST", url=url, body=score))
        assert (reply.response.status_code, reply.response.request_id) == (200, "score-1")
    rerank = {"model": "m", "query": "q", "documents": ["a", "b"]}
    for url in ("/rerank", "/v1/rerank", "/v2/rerank"):
        reply = await engine.serve(EngineRequest(method="POST", url=url, body=rerank))
        assert reply.response.status_code == 200
    assert seen[0] == "ResponsesRequest"
    assert seen[-1] == "RerankRequest"
    chat = await engine.serve(EngineRequest(method="POST", url="/v1/chat/completions", body=CHAT))
    assert chat.response.status_code == 404
    assert request_line.error_message(chat.response) == (
        "The model does not support /v1/chat/completions."
    )


_WAV = "UklGRigAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQQAAAAAAP9/"


async def test_an_audio_line_takes_vllm_run_batchs_file_url_under_the_media_rule() -> None:
    """A data: URL is decoded and handed over as the upload; an http one is refused while
    fetching is off, before anything is fetched."""
    import base64

    heard: list[tuple[bytes, str]] = []

    async def transcribe(audio: bytes, request: Any, raw_request: Any = None) -> _Answer:
        heard.append((audio, type(request).__name__))
        return _Answer(id="trsc-1")

    state = SimpleNamespace(
        openai_serving_transcription=SimpleNamespace(create_transcription=transcribe)
    )
    engine = VllmEngine(_Engine(), state)
    assert engine.served_endpoints == ("/v1/audio/transcriptions",)
    body = {"model": "m", "file_url": f"data:audio/wav;base64,{_WAV}", "response_format": "json"}
    url = "/v1/audio/transcriptions"
    reply = await engine.serve(EngineRequest(method="POST", url=url, body=body))
    assert reply.response.status_code == 200
    assert heard == [(base64.b64decode(_WAV), "TranscriptionRequest")]
    fetched = {**body, "file_url": "http://10.0.0.1/secret.wav"}
    refused = await engine.serve(EngineRequest(method="POST", url=url, body=fetched))
    assert refused.response.status_code == 400
    assert refused.response.body is not None
    assert refused.response.body["error"]["param"] == "file_url"
    assert "fetching media URLs is turned off" in request_line.error_message(refused.response)
    assert len(heard) == 1
    translated = await engine.serve(
        EngineRequest(method="POST", url="/v1/audio/translations", body=body)
    )
    assert translated.response.status_code == 404
