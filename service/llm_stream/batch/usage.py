"""What a batch consumed, read from its result lines: tokens (OpenAI's ``usage``) and model.

vLLM's response bodies carry OpenAI's per-request ``usage``: ``prompt_tokens``,
``completion_tokens``, ``prompt_tokens_details.cached_tokens`` when prefix caching reports it,
``completion_tokens_details.reasoning_tokens`` when a reasoning parser does (a Responses body
names them ``input_tokens``, ``output_tokens`` and ``input_tokens_details`` /
``output_tokens_details``, as OpenAI's batch ``usage`` does). A batch's usage is
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
)


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """One request's tokens."""

    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0


def response_tokens(body: Mapping[str, Any] | None) -> TokenCounts:
    """The tokens a response body's ``usage`` reports (all 0 without one)."""
    totals = UsageTotals()
    totals.add_bodies((body,))
    return TokenCounts(totals.input, totals.cached, totals.output, totals.reasoning)


def answered_model(body: Mapping[str, Any] | None) -> str | None:
    """The model that answered a line (its response body's ``model``), if it names one."""
    model = body.get("model") if body else None
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

    def add_bodies(self, bodies: Iterable[Mapping[str, Any] | None]) -> None:
        """Add the tokens each response body's ``usage`` reports: the one rule for reading
        them. A count that is not a positive integer (a body from elsewhere may hold anything)
        counts 0. Bodies are decoded JSON, so exact type checks (``bool`` is no count) do, at a
        tenth of the cost of ``Mapping`` ones; one loop with the checks inline, as the
        aggregator runs it for every line."""
        for body in bodies:
            usage = body.get("usage") if body else None
            if type(usage) is not dict:
                continue
            # Chat and completions say prompt/completion, the Responses API input/output.
            value = usage.get("prompt_tokens", usage.get("input_tokens"))
            if type(value) is int and value > 0:
                self.input += value
            value = usage.get("completion_tokens", usage.get("output_tokens"))
            if type(value) is int and value > 0:
                self.output += value
            details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
            if type(details) is dict:
                value = details.get("cached_tokens")
                if type(value) is int and value > 0:
                    self.cached += value
            details = usage.get("completion_tokens_details", usage.get("output_tokens_details"))
            if type(details) is dict:
                value = details.get("reasoning_tokens")
                if type(value) is int and value > 0:
                    self.reasoning += value

    def usage(self) -> BatchUsage:
        """OpenAI's ``usage``: ``total_tokens`` is input plus output, as for one request."""
        return BatchUsage(
            input_tokens=self.input,
            input_tokens_details=InputTokensDetails(cached_tokens=self.cached),
            output_tokens=self.output,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=self.reasoning),
            total_tokens=self.input + self.output,
        )
