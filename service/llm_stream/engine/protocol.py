"""The engine boundary: what the worker needs of an inference engine, and its data types.

The worker talks to vLLM only through ``InferenceEngine``, as vLLM's own servers talk to its
``EngineClient``: the pipeline runs against the shipped echo engine in tests and benchmarks,
and against ``VllmEngine`` in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_stream.contracts import ResponseData
from llm_stream.errors import LlmStreamError


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One request line as the engine sees it; ``priority`` (lower is sooner) is the record's,
    for an engine that schedules by priority (None: the record named none)."""

    method: str
    url: str
    body: dict[str, Any]
    trace_headers: Mapping[str, str] = field(default_factory=dict)
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """vLLM's own per-request timings, in seconds (absent for n > 1 or when stats are off)."""

    queue: float | None = None
    time_to_first_token: float | None = None
    generation: float | None = None


@dataclass(frozen=True, slots=True)
class EngineReply:
    response: ResponseData
    timings: EngineTimings | None = None


class EngineUnavailableError(LlmStreamError, RuntimeError):
    """The engine cannot answer any request (it died): the work must be redelivered, not failed."""


class InferenceEngine(Protocol):
    """Answers OpenAI requests as vLLM's OpenAI server would, without HTTP."""

    async def serve(self, request: EngineRequest) -> EngineReply:
        """The response (status code and body) for one request; errors are responses too.

        Raises EngineUnavailableError only when no request can be served any more.
        """
        ...

    async def check_health(self) -> None:
        """Raise EngineUnavailableError when the engine is dead."""
        ...

    async def close(self) -> None: ...

    @property
    def max_concurrency(self) -> int:
        """How many requests the engine schedules at once (vLLM's max_num_seqs)."""
        ...

    @property
    def served_models(self) -> tuple[str, ...]:
        """The model names requests may name (vLLM's ``--served-model-name``, else the model
        path), the first one the default."""
        ...

    @property
    def served_endpoints(self) -> tuple[str, ...] | None:
        """The endpoints its model serves (of ``contracts.SUPPORTED_ENDPOINTS``), which workers
        announce so that a batch no worker can serve fails at validation; None while not known
        (an engine still starting)."""
        ...
