"""What a batch consumed, read from its result lines: tokens (OpenAI's ``usage``) and model.

vLLM's response bodies carry OpenAI's per-request ``usage``: ``prompt_tokens``,
``completion_tokens``, ``prompt_tokens_details.cached_tokens`` when prefix caching reports it,
``completion_tokens_details.reasoning_tokens`` when a reasoning parser does. A batch's usage is
their sum over its requests, each request counted once (the caller adds only first deliveries),
so it grows while the batch runs. Lines without a body (errors, cancelled requests) count 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def response_tokens(body: Mapping[str, Any] | None) -> TokenCounts:
    """The tokens a response body's ``usage`` reports (all 0 without one). A count that is not
    a positive integer (a body from elsewhere may hold anything) counts 0. Bodies are decoded
    JSON: exact type checks (``bool`` is no count) cost a tenth of ``Mapping`` ones, and the
    aggregator calls this for every line, so the checks are inline."""
    usage = body.get("usage") if body else None
    if type(usage) is not dict:
        return _NO_TOKENS
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    cached = usage.get("prompt_tokens_details")
    cached = cached.get("cached_tokens") if type(cached) is dict else 0
    reasoning = usage.get("completion_tokens_details")
    reasoning = reasoning.get("reasoning_tokens") if type(reasoning) is dict else 0
    return TokenCounts(
        prompt if type(prompt) is int and prompt > 0 else 0,
        cached if type(cached) is int and cached > 0 else 0,
        completion if type(completion) is int and completion > 0 else 0,
        reasoning if type(reasoning) is int and reasoning > 0 else 0,
    )


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

    def add_results(self, results: Iterable[ResultMessage]) -> None:
        """Add each result's tokens (a poll's worth, in one loop: it runs for every line)."""
        for result in results:
            response = result.response
            if response is None or not response.body:
                continue
            counts = response_tokens(response.body)
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
