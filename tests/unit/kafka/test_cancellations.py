"""Which batches count as cancelled, from the records of the batch-status topic."""

from __future__ import annotations

from pathlib import Path

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject
from llm_stream.kafka.cancellations import CancelFollower
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings

S = BatchStatus


def _status(batch_id: str, status: BatchStatus) -> IncomingRecord:
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=1)
    reached = {} if status is S.VALIDATING else {status: 1}
    if status is S.CANCELLED:
        reached[S.CANCELLING] = 1
    batch = batch_object(manifest, status, reached_at=reached)
    return IncomingRecord("status", 0, 0, batch.model_dump_json().encode(), key=batch_id.encode())


async def test_each_batch_is_reported_once_from_its_first_cancel_on() -> None:
    reported: list[tuple[str, BatchStatus]] = []

    async def on_cancel(batch: BatchObject) -> None:
        reported.append((batch.id, batch.status))

    follower = CancelFollower(Settings(), on_cancel)
    for record in (
        _status("a", S.IN_PROGRESS),
        _status("a", S.CANCELLING),
        _status("a", S.IN_PROGRESS),  # progress published before its author saw the cancel
        _status("a", S.CANCELLING),
        _status("a", S.CANCELLED),
        _status("b", S.COMPLETED),
        _status("c", S.CANCELLED),  # all that compaction left of a batch cancelled long ago
        IncomingRecord("status", 0, 9, b"not a batch object", key=b"d"),
        IncomingRecord("status", 0, 10, None, key=b"a"),  # a tombstone
    ):
        await follower.apply(record)
    assert reported == [("a", S.CANCELLING), ("c", S.CANCELLED)]
    assert follower.cancelled.ids() == {"a", "c"}
    assert follower.problem() is not None  # not running: no consumer in this test


async def test_what_cancels_leave_behind_is_bounded_by_recent_batches() -> None:
    """Every cancel ever would grow with history: the follower remembers the recent ones, and
    tells the role of every batch that ended, so that it can forget what it kept for it."""
    from llm_stream.batch.recent_ids import RECENT_BATCHES

    ended: list[str] = []

    async def on_cancel(batch: BatchObject) -> None: ...

    follower = CancelFollower(Settings(), on_cancel, on_end=lambda batch: ended.append(batch.id))
    for number in range(RECENT_BATCHES + 50):
        await follower.apply(_status(f"b{number}", S.CANCELLED))
    await follower.apply(_status("done", S.COMPLETED))
    await follower.apply(_status("going", S.IN_PROGRESS))
    assert len(follower.cancelled) == RECENT_BATCHES
    assert "b0" not in follower.cancelled
    assert f"b{RECENT_BATCHES + 49}" in follower.cancelled
    assert len(ended) == RECENT_BATCHES + 51
    assert ended[-1] == "done"


async def test_an_aggregator_forgets_a_cancel_kept_for_a_batch_that_ended_elsewhere(
    tmp_path: Path,
) -> None:
    from llm_stream.aggregator.core import BatchAggregator
    from llm_stream.files.store import LocalFileStore
    from tests.fakes import FakeStatusPublisher

    aggregator = BatchAggregator(LocalFileStore(tmp_path), FakeStatusPublisher())
    follower = CancelFollower(Settings(), aggregator.cancel, on_end=aggregator.batch_ended)
    for number in range(20):
        await follower.apply(_status(f"elsewhere{number}", S.CANCELLING))
    assert aggregator.state_sizes()["cancelling"] == 20
    for number in range(20):
        await follower.apply(_status(f"elsewhere{number}", S.CANCELLED))
    assert aggregator.state_sizes()["cancelling"] == 0
    aggregator.close()
