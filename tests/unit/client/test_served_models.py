from __future__ import annotations

from typing import Any

import pytest

from llm_stream.client.served_models import ModelNotServedError, ServedModels
from llm_stream.kafka.live_workers import LiveWorkers
from tests.unit.kafka.announcements import Clock, announcement


class _Directory:
    def __init__(self, live: LiveWorkers) -> None:
        self.live = live
        self.reads = 0

    async def current(self, timeout: float) -> LiveWorkers:  # noqa: ASYNC109 (its interface)
        self.reads += 1
        return self.live


def _served(*models: str) -> tuple[ServedModels, _Directory]:
    live = LiveWorkers(Clock())
    live.add([announcement("w", list(models), 1000)])
    directory = _Directory(live)
    served: Any = directory
    return ServedModels(served), directory


async def test_served_models_pass_and_are_not_looked_up_again() -> None:
    served, directory = _served("small", "large")
    await served.require(["small"])
    await served.require(["small"])
    await served.require([])
    assert directory.reads == 1


async def test_an_unserved_model_is_refused_naming_it_and_those_served() -> None:
    served, _ = _served("small")
    with pytest.raises(ModelNotServedError) as refused:
        await served.require(["small", "gone"])
    assert refused.value.models == ["gone"]
    assert refused.value.served == ["small"]
    assert str(refused.value) == "no live worker serves the model `gone` (served now: small)"
