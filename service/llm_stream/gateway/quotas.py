"""Whether a project may queue one more batch: its enqueued tokens and batches in flight.

Counted as OpenAI counts them: a batch's input tokens (estimated, ``batch.token_estimate``)
count from its creation until it ends, per project and model. The counts are the status
topic's (the gateway's status index sums its unfinished batches), so every replica counts every
replica's batches: no store beyond Kafka. A batch past a quota is created ``failed`` with
OpenAI's error (``token_limit_exceeded``; ``batch_limit_exceeded`` for batches in flight), and
nothing of it is published to the requests topic.

Within one gateway, creates of one project that a quota bounds take turns from the check until
their manifest is on the status topic, so two of them never both take the last room. Two
replicas creating for one project in the same instant may both pass: the overshoot is bounded
by one batch per replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from llm_stream.gateway.limits import Limits
from llm_stream.gateway.models import BatchLineError
from llm_stream.gateway.stream import BatchStream
from llm_stream.ops import metrics

TOKEN_LIMIT_EXCEEDED = "token_limit_exceeded"
BATCH_LIMIT_EXCEEDED = "batch_limit_exceeded"


async def refusal(
    stream: BatchStream, limits: Limits, project: str, input_tokens: Mapping[str, int]
) -> BatchLineError | None:
    """Why ``project`` may not queue a batch of ``input_tokens`` (by model) now; None: it may."""
    for model, tokens in sorted(input_tokens.items()):
        quota = limits.quota(project, model)
        if not quota.enqueued_tokens and not quota.batches_in_flight:
            continue
        enqueued = await stream.enqueued(project, model)
        if quota.batches_in_flight and enqueued.batches >= quota.batches_in_flight:
            return BatchLineError(
                code=BATCH_LIMIT_EXCEEDED,
                message=f"Batch limit reached for {model} in project {project}. Limit: "
                f"{quota.batches_in_flight:,} batches in flight. Please try again once some "
                "in_progress batches have been completed.",
            )
        if quota.enqueued_tokens and enqueued.tokens + tokens > quota.enqueued_tokens:
            return BatchLineError(
                code=TOKEN_LIMIT_EXCEEDED,
                message=f"Enqueued token limit reached for {model} in project {project}. "
                f"Limit: {quota.enqueued_tokens:,} enqueued tokens. Please try again once "
                "some in_progress batches have been completed.",
            )
    return None


class QuotaTurns:
    """One create at a time per project whose batch a quota bounds, in this gateway."""

    def __init__(self) -> None:
        self._turns: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def admit(
        self, stream: BatchStream, limits: Limits, project: str, input_tokens: Mapping[str, int]
    ) -> AsyncIterator[BatchLineError | None]:
        """The refusal (or None) of a batch of ``input_tokens``, judged in the project's turn,
        which lasts until the block (that submits the batch) is left."""
        bounded = any(
            limits.quota(project, model).enqueued_tokens
            or limits.quota(project, model).batches_in_flight
            for model in input_tokens
        )
        if not bounded:
            yield None
            return
        turn = self._turns.setdefault(project, asyncio.Lock())  # one per configured project
        async with turn:
            found = await refusal(stream, limits, project, input_tokens)
            if found is not None:
                metrics.GATEWAY_QUOTA_REFUSALS.labels(project, found.code).inc()
            yield found
