"""The aggregator's role: it takes a whole fetch per poll but spools it in small steps, and its
periodic overdue check waits for the manifests before failing orphans.

With much history the manifest reader can still be reading old manifests long after the results
partitions are caught up: a batch whose manifest exists but is not read yet must not be failed
as ``missing_manifest``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from llm_stream.aggregator import app
from llm_stream.aggregator.app import AggregatorApp
from llm_stream.aggregator.core import BatchAggregator
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.test_core import TOPIC, _result


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


async def test_orphans_are_failed_only_once_the_manifests_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = AggregatorApp(
        Settings(
            output_dir=tmp_path / "out", spool_dir=tmp_path / "spool", orphan_batch_timeout_s=0.001
        )
    )
    status = FakeStatusPublisher()
    app.aggregator._status = status
    app.overdue_check_interval_s = 0.01
    commits: list[None] = []

    async def caught_up() -> bool:
        return True

    async def commit() -> bool:
        commits.append(None)
        return True

    monkeypatch.setattr(app, "_caught_up", caught_up)
    monkeypatch.setattr(app, "_owns", lambda: lambda batch_id: True)
    monkeypatch.setattr(app.loop, "commit_or_retry", commit)
    await app.aggregator.add_results([IncomingRecord(TOPIC, 0, 0, _result("late", "a"))])
    await asyncio.sleep(0.01)  # older than the orphan timeout
    checking = asyncio.create_task(app._close_overdue_periodically())
    try:
        async with asyncio.timeout(30):
            while len(commits) < 3:  # noqa: ASYNC110 (three checks ran, and committed)
                await asyncio.sleep(0.01)
        assert app.aggregator.open_batches == 1  # but the orphan waits for the manifests
        app.manifests.caught_up = True
        async with asyncio.timeout(30):
            while app.aggregator.open_batches:  # noqa: ASYNC110 (the next check fails it)
                await asyncio.sleep(0.01)
        assert [batch.status for batch in status.published] == ["failed"]
    finally:
        checking.cancel()
        app.aggregator.close()
