"""Whether the models a batch names are served now, for a client that routes by model.

With requests routed by model, a line whose model no live worker serves would sit in a topic
that nobody reads until its batch expires; the client refuses it before publishing instead,
as the gateway does. What is served comes from the workers' announcements
(``kafka.live_workers``), read from the workers topic once and followed after.
"""

from __future__ import annotations

from collections.abc import Iterable

from llm_stream.errors import LlmStreamError
from llm_stream.kafka.live_workers import WorkerDirectory

#: How long a check waits for the announcements to be read before it gives up.
READ_TIMEOUT_S = 10.0


class ModelNotServedError(LlmStreamError, LookupError):
    """A batch names a model that no live worker serves (requests routed by model)."""

    def __init__(self, models: Iterable[str], served: Iterable[str]) -> None:
        self.models = sorted(models)
        self.served = sorted(served)
        named = ", ".join(f"`{model[:256]}`" for model in self.models)
        offered = ", ".join(self.served) or "none"
        super().__init__(f"no live worker serves the model {named} (served now: {offered})")


class ServedModels:
    """The served models as a client sees them; the workers topic is read on first use."""

    def __init__(self, directory: WorkerDirectory) -> None:
        self._directory = directory
        #: Models found served by this client: not looked up again (their workers vanishing
        #: later is the aggregator's to report).
        self._known: set[str] = set()

    async def require(self, models: Iterable[str]) -> None:
        """Raise ``ModelNotServedError`` unless a live worker serves each of ``models``;
        TimeoutError when the workers topic cannot be read."""
        wanted = {model for model in models if model not in self._known}
        if not wanted:  # every line of a batch asks: no lookup once its models are known
            return
        live = await self._directory.current(READ_TIMEOUT_S)
        served = live.models()
        missing = wanted - set(served)
        if missing:
            raise ModelNotServedError(missing, served)
        self._known |= wanted
