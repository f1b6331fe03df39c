"""Which batches count as cancelled, from the records of the batch-status topic."""

from __future__ import annotations

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
    assert follower.cancelled == {"a", "c"}
    assert follower.problem() is not None  # not running: no consumer in this test
