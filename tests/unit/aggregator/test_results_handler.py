"""The aggregator takes a whole fetch per poll but spools it in small steps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from llm_stream.aggregator import app
from llm_stream.aggregator.core import BatchAggregator
from llm_stream.protocols import IncomingRecord


class _StepRecorder:
    def __init__(self) -> None:
        self.steps: list[list[int]] = []
        self.other_task_ran_between: list[bool] = []
        self.ticks = 0

    def releases(self) -> dict[tuple[str, int], int]:
        return {}

    async def add_results(self, records: Sequence[IncomingRecord], polled: object = None) -> None:
        self.other_task_ran_between.append(self.ticks > 0)
        self.ticks = 0
        self.steps.append([record.offset for record in records])


async def test_a_poll_is_spooled_in_steps_with_the_event_loop_free_between_them() -> None:
    recorder = _StepRecorder()
    handler = app._ResultsHandler(cast(BatchAggregator, recorder))
    assert handler.capacity() == app._RESULTS_PER_POLL > app._RESULTS_PER_STEP
    records = [IncomingRecord("results", 0, offset, b"{}") for offset in range(600)]

    async def ticking() -> None:  # stands for aiokafka's fetcher sending the next fetch
        while True:
            recorder.ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(ticking())
    await asyncio.sleep(0)
    try:
        await handler.handle(records)
    finally:
        ticker.cancel()
    assert [len(step) for step in recorder.steps] == [250, 250, 100]
    assert [offset for step in recorder.steps for offset in step] == list(range(600))
    assert recorder.other_task_ran_between[1:] == [True, True]
