"""The worker's role around its pipeline, without a broker: how many records it keeps started,
what its readiness reports, and what its periodic check and cancel follower tell the pipeline.

Building a ``WorkerApp`` connects to nothing (its broker and consumers connect when started);
consuming and publishing for real are covered by ``tests/integration/test_worker_failover.py``
and ``tests/integration/test_cancel.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest
from llm_stream.engine.protocol import EngineUnavailableError
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp, in_flight_limit
from tests.fakes import FakeEngine

SETTINGS = Settings(bootstrap_servers="127.0.0.1:1")


@pytest.fixture
async def worker() -> AsyncIterator[WorkerApp]:
    """A worker on a live fake engine (4 at once), its cancel follower taken as following."""
    app = WorkerApp(SETTINGS, FakeEngine(concurrency=4))
    app.cancels.problem = lambda: None  # type: ignore[method-assign]
    yield app
    await app.loop.stop()  # never started: closed, so it is not reported unclosed


def test_the_engine_gets_twice_what_it_runs_at_once_unless_a_limit_is_set() -> None:
    """The engine's scheduler always has the next requests queued; an operator may say more."""
    engine = FakeEngine(concurrency=5)
    assert in_flight_limit(SETTINGS, engine) == 10
    assert in_flight_limit(SETTINGS.with_overrides(max_in_flight=3), engine) == 3


async def test_the_pipelines_capacity_is_the_in_flight_limit() -> None:
    """The loop fetches no more records than the pipeline has free slots for, plus the room
    of its waiting queue."""
    settings = SETTINGS.with_overrides(max_in_flight=3, worker_max_waiting=0)
    app = WorkerApp(settings, FakeEngine(concurrency=4))
    try:
        assert app.pipeline.capacity() == 3
    finally:
        await app.loop.stop()
    default = WorkerApp(SETTINGS, FakeEngine(concurrency=4))
    try:
        assert default.pipeline.capacity() == 8 + SETTINGS.worker_max_waiting
    finally:
        await default.loop.stop()


async def test_a_worker_whose_cancel_follower_does_not_run_is_not_ready() -> None:
    """Without the status topic it would run cancelled batches to the end."""
    app = WorkerApp(SETTINGS, FakeEngine())
    try:
        problem = await app.check()
        assert problem is not None
        assert SETTINGS.batch_status_topic in problem
    finally:
        await app.loop.stop()


async def test_a_worker_with_a_live_engine_and_its_follower_is_ready(worker: WorkerApp) -> None:
    """Nothing to report: the role's readiness goes on to the broker and the loop."""
    assert await worker.check() is None


async def test_a_dead_engine_makes_the_worker_unready_and_its_tick_stops_it(
    worker: WorkerApp,
) -> None:
    """An idle worker whose engine died must leave its partitions to another worker."""
    await worker.tick()
    assert worker.pipeline.failure is None
    await worker.engine.close()
    problem = await worker.check()
    assert problem is not None
    assert problem.startswith("engine unavailable: ")
    await worker.tick()
    assert isinstance(worker.pipeline.failure, EngineUnavailableError)
    assert worker.pipeline.failed.is_set()
    assert await worker.check() == "stopping"


async def test_readiness_reports_the_workers_own_check(
    worker: WorkerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/readyz`` names the engine, not only the broker and the consume loop."""

    async def reachable(**bounds: float) -> bool:
        return True

    monkeypatch.setattr(worker.broker, "ping", reachable)
    await worker.engine.close()
    problem = await worker.readiness()
    assert problem is not None
    assert problem.startswith("engine unavailable: ")


async def test_a_cancelled_batch_on_the_status_topic_is_cancelled_in_the_pipeline(
    worker: WorkerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower's cancels reach the pipeline, once per batch; other statuses do not."""
    cancelled: list[str] = []
    monkeypatch.setattr(
        worker.pipeline, "cancel_batch", lambda batch_id: cancelled.append(batch_id)
    )
    manifest = BatchManifest(batch_id="b1", endpoint="/v1/completions", request_count=1)

    def record(status: BatchStatus) -> IncomingRecord:
        batch = batch_object(manifest, status, reached_at={status: manifest.created_at})
        return IncomingRecord(SETTINGS.batch_status_topic, 0, 0, batch.model_dump_json().encode())

    await worker.cancels.apply(record(BatchStatus.IN_PROGRESS))
    assert cancelled == []
    await worker.cancels.apply(record(BatchStatus.CANCELLING))
    await worker.cancels.apply(record(BatchStatus.CANCELLING))
    assert cancelled == ["b1"]


async def test_a_worker_with_nothing_in_flight_drains_at_once(worker: WorkerApp) -> None:
    """A stop with no work under way has nothing to wait for."""
    assert await worker.drain() is True
