from __future__ import annotations

import asyncio
import time

import pytest

from llm_stream.engine.echo import EchoEngine
from llm_stream.engine.protocol import EngineRequest, EngineUnavailableError


async def test_completions_and_chat_are_echoed() -> None:
    engine = EchoEngine()
    completion = await engine.serve(
        EngineRequest("POST", "/v1/completions", {"model": "m", "prompt": "hi"})
    )
    assert completion.response.status_code == 200
    assert completion.response.body is not None
    assert completion.response.body["choices"][0]["text"] == "HI"
    chat = await engine.serve(
        EngineRequest(
            "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "yo"}]}
        )
    )
    assert chat.response.body is not None
    assert chat.response.body["choices"][0]["message"]["content"] == "YO"
    assert chat.response.body["object"] == "chat.completion"
    assert engine.max_running == 1


async def test_embeddings_are_not_served_and_a_closed_engine_is_unavailable() -> None:
    engine = EchoEngine()
    reply = await engine.serve(EngineRequest("POST", "/v1/embeddings", {"input": "x"}))
    assert reply.response.status_code == 404
    await engine.close()
    with pytest.raises(EngineUnavailableError):
        await engine.check_health()
    with pytest.raises(EngineUnavailableError):
        await engine.serve(EngineRequest("POST", "/v1/completions", {"prompt": "x"}))


async def test_a_random_prompt_gets_an_answer_of_that_many_random_bytes() -> None:
    reply = await EchoEngine().serve(
        EngineRequest("POST", "/v1/completions", {"prompt": "random:3000"})
    )
    assert reply.response.body is not None
    assert len(reply.response.body["choices"][0]["text"]) == 4000  # base64 of 3000 bytes


async def test_requests_are_remembered_only_when_asked() -> None:
    request = EngineRequest("POST", "/v1/completions", {"prompt": "x"})
    forgetful, keeping = EchoEngine(), EchoEngine(keep_requests=True)
    for _ in range(3):
        await forgetful.serve(request)
        await keeping.serve(request)
    assert forgetful.seen == []  # memory stays flat however many requests pass
    assert keeping.seen == [request] * 3


async def test_given_model_names_another_model_is_answered_as_vllm_answers_it() -> None:
    engine = EchoEngine(models=("small", "small-alias"))
    assert engine.served_models == ("small", "small-alias")
    assert EchoEngine().served_models == ("echo",)
    served = await engine.serve(
        EngineRequest("POST", "/v1/completions", {"model": "small-alias", "prompt": "x"})
    )
    assert served.response.status_code == 200
    refused = await engine.serve(
        EngineRequest("POST", "/v1/completions", {"model": "large", "prompt": "x"})
    )
    assert refused.response.status_code == 404
    assert refused.response.body == {
        "error": {
            "message": "The model `large` does not exist. Valid aliases: small, small-alias.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    unnamed = await engine.serve(EngineRequest("POST", "/v1/completions", {"prompt": "x"}))
    assert unnamed.response.status_code == 200  # no model: the default one, as vLLM


async def test_a_latency_holds_every_request_and_they_overlap() -> None:
    engine = EchoEngine(latency_s=0.2, delays={"slow": 0.1})
    request = EngineRequest("POST", "/v1/completions", {"prompt": "x"})
    started = time.monotonic()
    await asyncio.gather(*(engine.serve(request) for _ in range(5)))
    held = time.monotonic() - started
    assert 0.2 <= held < 0.35  # each held 0.2 s, all five at once
    assert engine.max_running == 5
    started = time.monotonic()
    await engine.serve(EngineRequest("POST", "/v1/completions", {"prompt": "slow"}))
    assert time.monotonic() - started >= 0.3  # the latency and the prompt's own delay


async def test_it_serves_chat_and_completions_and_says_so() -> None:
    """A served endpoint it does not answer is the model not serving it; an unknown URL is
    an unsupported endpoint."""
    engine = EchoEngine()
    assert engine.served_endpoints == ("/v1/chat/completions", "/v1/completions")
    rerank = await engine.serve(EngineRequest("POST", "/v1/rerank", {"query": "x"}))
    assert rerank.response.body is not None
    assert rerank.response.body["error"]["message"] == "The model does not support /v1/rerank."
    unknown = await engine.serve(EngineRequest("POST", "/v1/nothing", {}))
    assert unknown.response.body is not None
    assert unknown.response.body["error"]["message"].startswith("Unsupported endpoint")
