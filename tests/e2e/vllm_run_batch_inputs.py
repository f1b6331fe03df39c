"""vLLM's own run-batch test inputs, endpoint by endpoint, for the peer comparison.

Transcribed from vLLM's tests/entrypoints/launchers/test_run_batch.py (commit 08af037, the
test module of the launcher that vLLM 0.32's run-batch lives in): the same lines, with each
model name replaced by the tiny model's served name (``NonExistModel`` kept), since nothing is
fetched from a hub here. Its audio lines name a data: URL and vLLM's hosted audio asset.
"""

from __future__ import annotations

from typing import Any, Final

from tests.processes import SERVED_MODEL

_SYSTEM_HELPFUL = {"role": "system", "content": "You are a helpful assistant."}
_SYSTEM_UNHELPFUL = {"role": "system", "content": "You are an unhelpful assistant."}
_HELLO = {"role": "user", "content": "Hello world!"}


def _line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def _chat(model: str, system: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [system, _HELLO], "max_tokens": 1000, **extra}


#: INPUT_BATCH: two answers, an unknown model, an unknown URL, a streaming request.
CHAT: Final = [
    _line("request-1", "/v1/chat/completions", _chat(SERVED_MODEL, _SYSTEM_HELPFUL)),
    _line("request-2", "/v1/chat/completions", _chat(SERVED_MODEL, _SYSTEM_UNHELPFUL)),
    _line("request-3", "/v1/chat/completions", _chat("NonExistModel", _SYSTEM_UNHELPFUL)),
    _line("request-4", "/bad_url", _chat(SERVED_MODEL, _SYSTEM_UNHELPFUL)),
    _line(
        "request-5", "/v1/chat/completions", _chat(SERVED_MODEL, _SYSTEM_UNHELPFUL, stream="True")
    ),
]

#: INPUT_REASONING_BATCH (run there with a reasoning parser; here the lines alone).
REASONING: Final = [
    _line(
        f"request-{n}",
        "/v1/chat/completions",
        {
            "model": SERVED_MODEL,
            "messages": [_SYSTEM_HELPFUL, {"role": "user", "content": question}],
        },
    )
    for n, question in (
        (1, "Solve this math problem: 2+2=?"),
        (2, "What is the capital of France?"),
    )
]

_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

#: INPUT_TOOL_CALLING_BATCH: a required tool call.
TOOL_CALLING: Final = [
    _line(
        "request-1",
        "/v1/chat/completions",
        {
            "model": SERVED_MODEL,
            "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": [_WEATHER_TOOL],
            "tool_choice": "required",
            "max_tokens": 1000,
        },
    )
]

#: INPUT_EMBEDDING_BATCH: three answers and an unknown model.
EMBEDDINGS: Final = [
    _line(f"request-{n}", "/v1/embeddings", {"model": model, "input": text})
    for n, model, text in (
        (1, SERVED_MODEL, "You are a helpful assistant."),
        (2, SERVED_MODEL, "You are an unhelpful assistant."),
        (3, SERVED_MODEL, "Hello world!"),
        (4, "NonExistModel", "Hello world!"),
    )
]

_DOCUMENTS = ["The capital of Brazil is Brasilia.", "The capital of France is Paris."]
_QUESTION = "What is the capital of France?"

#: INPUT_SCORE_BATCH: both paths.
SCORE: Final = [
    _line(
        f"request-{n}",
        url,
        {"model": SERVED_MODEL, "queries": _QUESTION, "documents": _DOCUMENTS},
    )
    for n, url in ((1, "/score"), (2, "/v1/score"))
]

#: INPUT_RERANK_BATCH: all three paths; its last two lines share a custom_id, as there.
RERANK: Final = [
    _line(custom_id, url, {"model": SERVED_MODEL, "query": _QUESTION, "documents": _DOCUMENTS})
    for custom_id, url in (
        ("request-1", "/rerank"),
        ("request-2", "/v1/rerank"),
        ("request-2", "/v2/rerank"),
    )
]

_MINIMAL_WAV = "UklGRigAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQQAAAAAAP9/"
_MARY_HAD_LAMB = (
    "https://vllm-public-assets.s3.us-west-2.amazonaws.com/multimodal_asset/mary_had_lamb.ogg"
)

#: INPUT_TRANSCRIPTION_BATCH, INPUT_TRANSCRIPTION_HTTP_BATCH and INPUT_TRANSLATION_BATCH.
AUDIO: Final = [
    _line(
        "request-1",
        "/v1/audio/transcriptions",
        {
            "model": SERVED_MODEL,
            "file_url": f"data:audio/wav;base64,{_MINIMAL_WAV}",
            "response_format": "json",
        },
    ),
    _line(
        "request-1",
        "/v1/audio/transcriptions",
        {
            "model": SERVED_MODEL,
            "file_url": _MARY_HAD_LAMB,
            "language": "en",
            "response_format": "json",
        },
    ),
    _line(
        "request-1",
        "/v1/audio/translations",
        {
            "model": SERVED_MODEL,
            "file_url": _MARY_HAD_LAMB,
            "response_format": "text",
            "language": "it",
            "to_language": "en",
            "temperature": 0.0,
        },
    ),
]

#: INVALID_INPUT_BATCH: a line with no custom_id (vLLM's run-batch stops on it), then a chat line.
INVALID: Final = [
    {
        "invalid_field": "request-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": _chat(SERVED_MODEL, _SYSTEM_HELPFUL),
    },
    _line("request-2", "/v1/chat/completions", _chat(SERVED_MODEL, _SYSTEM_UNHELPFUL)),
]

#: Each endpoint's inputs, as the report counts them.
BY_ENDPOINT: Final = {
    "/v1/chat/completions": CHAT + REASONING + TOOL_CALLING,
    "/v1/embeddings": EMBEDDINGS,
    "/score": SCORE,
    "/rerank": RERANK,
    "/v1/audio": AUDIO,
}
