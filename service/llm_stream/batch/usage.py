"""What a batch consumed, read from its result lines: tokens (OpenAI's ``usage``) and model.

vLLM's response bodies carry OpenAI's per-request ``usage``: ``prompt_tokens``,
``completion_tokens``, ``prompt_tokens_details.cached_tokens`` when prefix caching reports it,
``completion_tokens_details.reasoning_tokens`` when a reasoning parser does. A batch's usage is
their sum over its requests, each request counted once (the caller adds only first deliveries),
so it grows while the batch runs. Lines without a body (errors, cancelled requests) count 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_stream.contracts import (
    BatchUsage,
    InputTokensDetails,
    OutputTokensDetails,
    ResultMessage,
)


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """One request's tokens."""

    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0


_NO_TOKENS = TokenCounts()


def _count(document: Any, field: str) -> int:
    """A positive integer field, else 0 (a body from elsewhere may hold anything). Bodies are
    decoded JSON: exact type checks (``bool`` is no count) cost a tenth of ``Mapping`` ones."""
    value = document.get(field) if isinstance(document, dict) else None
    return value if type(value) is int and value > 0 else 0


def response_tokens(body: Mapping[str, Any] | None) -> TokenCounts:
    """The tokens a response body's ``usage`` reports (all 0 without one)."""
    usage = body.get("usage") if body else None
    if not isinstance(usage, dict):
        return _NO_TOKENS
    return TokenCounts(
        input=_count(usage, "prompt_tokens"),
        cached=_count(usage.get("prompt_tokens_details"), "cached_tokens"),
        output=_count(usage, "completion_tokens"),
        reasoning=_count(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


def result_tokens(result: ResultMessage) -> TokenCounts:
    return response_tokens(result.response.body if result.response is not None else None)


def answered_model(result: ResultMessage) -> str | None:
    """The model that answered the line (its response body's ``model``), if it names one."""
    body = result.response.body if result.response is not None else None
    model = (body or {}).get("model")
    return model if isinstance(model, str) and model else None


class UsageTotals:
    """A batch's running sum of ``TokenCounts``."""

    __slots__ = ("cached", "input", "output", "reasoning")

    def __init__(self) -> None:
        self.input = self.cached = self.output = self.reasoning = 0

    def add(self, counts: TokenCounts) -> None:
        self.input += counts.input
        self.cached += counts.cached
        self.output += counts.output
        self.reasoning += counts.reasoning

    def usage(self) -> BatchUsage:
        """OpenAI's ``usage``: ``total_tokens`` is input plus output, as for one request."""
        return BatchUsage(
            input_tokens=self.input,
            input_tokens_details=InputTokensDetails(cached_tokens=self.cached),
            output_tokens=self.output,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=self.reasoning),
            total_tokens=self.input + self.output,
        )
