"""How many input tokens a request line holds, estimated without the model's tokenizer.

Enqueued-token quotas count a batch's input tokens when it is created, as OpenAI does. The
gateway that counts them holds no model (it may front several, none loaded there), so it
estimates: a token per four bytes of UTF-8 text (the rule of thumb of BPE tokenizers on English;
fewer bytes per token on other scripts, which the byte count already weighs more), plus the
framing a chat template adds per message. An estimate is all a quota needs: it bounds how much
work one project may queue, not what a line is billed (``usage`` counts the real tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llm_stream.batch.request_line import line_model

#: Bytes of text per token, BPE's rule of thumb.
BYTES_PER_TOKEN = 4
#: What a chat template adds around each message (role and separators), and once per request.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
#: How deep nested content is looked into (a content part's text, a tool call's arguments).
_MAX_DEPTH = 8


def _text_bytes(value: Any, depth: int = 0) -> int:
    """Bytes of the text in ``value``: strings, and the strings inside lists and objects
    (content parts, tool calls); token ids in a prompt count as one token each."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if depth >= _MAX_DEPTH:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return BYTES_PER_TOKEN  # a token id of a pre-tokenized prompt
    if isinstance(value, list):
        return sum(_text_bytes(item, depth + 1) for item in value)
    if isinstance(value, Mapping):
        return sum(_text_bytes(item, depth + 1) for item in value.values())
    return 0


def _tokens(text_bytes: int) -> int:
    return -(-text_bytes // BYTES_PER_TOKEN)


#: The fields that hold a request's input text, by endpoint: completions' ``prompt``,
#: embeddings' and Responses' ``input`` (with its ``instructions``), score's and rerank's
#: query and documents (each document is paired with the query, which this counts once).
INPUT_FIELDS = ("prompt", "input", "instructions", "query", "queries", "documents")


def estimate_input_tokens(body: Any) -> int:
    """The input tokens of a request body: its ``messages`` (chat), else its ``INPUT_FIELDS``;
    0 for a body that holds none of them."""
    if not isinstance(body, Mapping):
        return 0
    messages = body.get("messages")
    if isinstance(messages, list):
        framing = TOKENS_PER_REQUEST + TOKENS_PER_MESSAGE * len(messages)
        return framing + sum(_tokens(_text_bytes(message)) for message in messages)
    return sum(_tokens(_text_bytes(body[field])) for field in INPUT_FIELDS if field in body)


def count_input_tokens(lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The estimated input tokens of request ``lines`` by the model each names (a line naming
    none counts for no model)."""
    counted: dict[str, int] = {}
    for line in lines:
        if (model := line_model(line)) is not None:
            counted[model] = counted.get(model, 0) + estimate_input_tokens(line.get("body"))
    return counted
