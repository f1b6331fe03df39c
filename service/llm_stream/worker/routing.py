"""Which records of the shared requests topic a worker group answers, when requests are
routed by model.

Producers of this project send each line to its model's topic; a producer that does not route
(another team's client) publishes to the shared requests topic, which every group reads as
well. Each record there is answered by one group: its model's, when a live worker serves that
model; otherwise (no model, a model nobody serves, a record that is no request at all) by the
group whose model comes first in name order among those served now, which answers as vLLM
would (404 for an unknown model, a dead letter for garbage). Every group decides alike from
the same announcements; in the moment a group appears or vanishes two groups may both answer a
record, and the aggregator keeps one line per ``custom_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from llm_stream.contracts import RequestMessage
from llm_stream.kafka.live_workers import LiveWorkers
from llm_stream.worker.request_parsing import ParsedRecord

#: Whether this worker answers a record of a topic naming a model (or none).
Claims = Callable[[str, str | None], Awaitable[bool]]


def model_of(parsed: ParsedRecord) -> str | None:
    """The model a request names; None for one that names none or is no request."""
    model = parsed.body.get("model") if isinstance(parsed, RequestMessage) else None
    return model if isinstance(model, str) else None


class SharedTopicClaims:
    """``await claims(topic, model)``: whether this group answers a record of ``topic``. A
    record it may have to leave to another group waits until the announcements are read
    (``known``), so a worker just started does not answer for groups it has not heard of."""

    def __init__(
        self,
        shared_topic: str,
        own_models: Iterable[str],
        live: LiveWorkers,
        known: asyncio.Event,
    ) -> None:
        self._shared = shared_topic
        self._own = frozenset(own_models)
        self._live = live
        self._known = known

    async def __call__(self, topic: str, model: str | None) -> bool:
        if topic != self._shared or (model is not None and model in self._own):
            return True
        await self._known.wait()
        served = set(self._live.models())
        if model is not None and model in served:
            return False  # its own group answers it
        return min(served | self._own) in self._own
