"""Batches waiting for a model that no live worker serves, when requests are routed by model.

Their requests sit in the model's topic until a worker for it comes back, or the batch expires.
Rather than let that pass in silence, the owner of such a batch reports it once the model has
been absent for ``unserved_model_report_s``: a log line, a gauge, and an error on the batch
object (OpenAI's ``errors`` shape; the batch stays as it is otherwise), cleared when a worker
for the model returns. Absence is timed per model from when this aggregator first saw it
missing; the state holds only models that open batches name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from llm_stream.batch.objects import batch_errors
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.live_workers import LiveWorkers

NOT_SERVED = "model_not_served"


class UnservedModels:
    """Which batches name a model that has had no live worker for ``report_after_s``."""

    def __init__(
        self,
        live: LiveWorkers,
        report_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live = live
        self._report_after_s = report_after_s
        self._clock = clock
        self._absent_since: dict[str, float] = {}

    def waiting(self, manifests: Sequence[BatchManifest]) -> dict[str, list[str]]:
        """Each batch among ``manifests`` that waits for an absent model, with those models."""
        now = self._clock()
        served = set(self._live.models())
        named = {model for manifest in manifests for model in manifest.served_by()}
        self._absent_since = {model: self._absent_since.get(model, now) for model in named - served}
        gone = {m for m, since in self._absent_since.items() if now - since >= self._report_after_s}
        waiting = {}
        for manifest in manifests:
            missing = sorted(gone.intersection(manifest.served_by()))
            if missing:
                waiting[manifest.batch_id] = missing
        return waiting

    def absent_for(self, model: str) -> float:
        since = self._absent_since.get(model)
        return 0.0 if since is None else self._clock() - since


def waiting_errors(models: Iterable[str], absent_for: Callable[[str], float]) -> dict[str, object]:
    """The batch object's ``errors`` while it waits for ``models``."""
    named = ", ".join(f"`{model}` ({absent_for(model):.0f} s)" for model in models)
    message = (
        f"no live worker serves the model {named}; the batch's requests wait for one until "
        "the batch expires"
    )
    return batch_errors(NOT_SERVED, message, "model")
