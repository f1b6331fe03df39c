"""The line shape of ``vllm run-batch``, which ``llm-stream run-batch`` writes as its drop-in.

The aggregator writes OpenAI's batch shape (an error's body in ``response.body``). vLLM's
run-batch writes a failed line with ``response.body`` null, the status in
``response.status_code`` and the error in ``error``, and scripts that parse its output with its
``BatchRequestOutput`` expect exactly that. One function turns the first into the second; a line
that had no usable ``custom_id`` (vLLM's run-batch would have crashed on it) gets ``""``.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_stream.contracts import SUPPORTED_ENDPOINTS


def to_vllm_line(line: bytes) -> bytes:
    """``line`` (an OpenAI batch output line) in vLLM run-batch's shape, newline-terminated."""
    document: dict[str, Any] = orjson.loads(line)
    if document.get("custom_id") is None:  # a line with no usable id: vLLM's model wants a str
        document["custom_id"] = ""
    response = document.get("response")
    if isinstance(response, dict) and response.get("status_code") != 200:
        document["error"] = document.get("error") or response.get("body")
        document["response"] = {**response, "body": None}
    return orjson.dumps(document) + b"\n"


def unsupported_url_message(url: object) -> str:
    """vLLM run-batch's message for a URL it does not serve, naming the ones we do."""
    return f"URL {url} was used. Supported endpoints: {', '.join(SUPPORTED_ENDPOINTS)}."
