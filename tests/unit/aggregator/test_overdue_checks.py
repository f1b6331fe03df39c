"""The aggregator's periodic overdue check waits for the manifests before failing orphans.

With much history the manifest reader can still be reading old manifests long after the results
partitions are caught up: a batch whose manifest exists but is not read yet must not be failed
as ``missing_manifest``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.test_core import TOPIC, _result


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
