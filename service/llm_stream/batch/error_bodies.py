"""Error bodies in the exact shape vLLM's OpenAI server returns them.

``{"error": {"message", "type", "param", "code"}}``, the HTTP status in ``code``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from llm_stream.contracts import SUPPORTED_ENDPOINTS, ResponseData

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlong = 2, 40, 40, 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4


def describe(value: object, limit: int = 100) -> str:
    """A repr of at most about ``limit`` characters: messages, reports and dead-letter reasons
    never repeat a huge value (a 600,000-character id) in full. Short strings: ``repr``."""
    if isinstance(value, str):
        text = repr(value)
        if len(text) <= limit:
            return text
        return f"{repr(value[:limit])[:limit]}… ({len(value)} chars)"
    try:
        text = _short.repr(value)
    except Exception:  # e.g. an int too long for repr: say what it is instead
        text = f"a {type(value).__name__}"
    size = f" ({len(value)} items)" if isinstance(value, list | dict) else ""
    return text if len(text) <= limit else f"{text[:limit]}…{size}"


def error_response(
    status: HTTPStatus, message: str, *, error_type: str | None = None, param: str | None = None
) -> ResponseData:
    body: dict[str, Any] = {
        "error": {
            "message": message,
            "type": error_type or f"{status.phrase.replace(' ', '')}Error",
            "param": param,
            "code": int(status),
        }
    }
    return ResponseData(status_code=int(status), request_id="", body=body)


def unsupported_endpoint(url: str) -> ResponseData:
    supported = ", ".join(SUPPORTED_ENDPOINTS)
    return error_response(
        HTTPStatus.NOT_FOUND,
        f"Unsupported endpoint {describe(url)}. Supported endpoints: {supported}.",
        param="url",
    )


#: How the answer to a line whose endpoint the loaded model does not serve begins.
MODEL_DOES_NOT_SERVE = "The model does not support "


def endpoint_not_served(url: str) -> ResponseData:
    """The answer to a line whose endpoint (one of ``SUPPORTED_ENDPOINTS``) the loaded model
    does not serve, a chat line to an embedding model: 404, as vLLM's server has no route."""
    return error_response(
        HTTPStatus.NOT_FOUND,
        f"{MODEL_DOES_NOT_SERVE}{url}.",
        error_type="NotFoundError",
        param="url",
    )


def model_not_found(model: str, served: Sequence[str]) -> ResponseData:
    """vLLM's answer to a request for a model it does not serve (its serving layer's words)."""
    return error_response(
        HTTPStatus.NOT_FOUND,
        f"The model `{describe_model(model)}` does not exist. Valid aliases: {', '.join(served)}.",
        error_type="NotFoundError",
        param="model",
    )


def describe_model(model: str, limit: int = 256) -> str:
    return model if len(model) <= limit else f"{model[:limit]}…"


def method_not_allowed(method: str) -> ResponseData:
    return error_response(
        HTTPStatus.METHOD_NOT_ALLOWED,
        f"Method {describe(method)} is not allowed; batch requests use POST.",
        param="method",
    )


def streaming_refused() -> ResponseData:
    return error_response(
        HTTPStatus.BAD_REQUEST,
        "Request must not be sent in stream mode: batch results are whole responses.",
        error_type="BadRequestError",
        param="stream",
    )


def response_too_large(size: int, limit: int, request_id: str) -> ResponseData:
    """The error line of an answer that cannot be published: Kafka refuses records over the
    topic's max.message.bytes, so the answer is replaced by this, never dropped."""
    response = error_response(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"The response is {size} bytes after compression, over the {limit}-byte limit of a "
        "published result (LLM_STREAM_MAX_MESSAGE_BYTES, which must not exceed the results "
        "topic's max.message.bytes). Ask for fewer choices (n), tokens or logprobs, or raise "
        "both limits.",
        error_type="ResponseTooLargeError",
    )
    return response.model_copy(update={"request_id": request_id})
