"""A batch's reported errors stay on its progress objects until cleared or the batch ends."""

from __future__ import annotations

from llm_stream.aggregator.standing_errors import StandingErrors
from llm_stream.batch.objects import batch_errors, batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject

MANIFEST = BatchManifest(batch_id="b1", endpoint="/v1/completions", request_count=3)
REACHED = {
    BatchStatus.IN_PROGRESS: 1,
    BatchStatus.FINALIZING: 2,
    BatchStatus.COMPLETED: 3,
}


def _object(status: BatchStatus, errors: dict[str, object] | None = None) -> BatchObject:
    return batch_object(MANIFEST, status, reached_at=REACHED, errors=errors)


class Recorder:
    def __init__(self) -> None:
        self.published: list[BatchObject] = []

    async def publish_status(self, batch: BatchObject) -> None:
        self.published.append(batch)


def _codes(batch: BatchObject) -> list[str]:
    return [error["code"] for error in (batch.errors or {}).get("data") or []]


async def test_progress_keeps_a_held_report_until_it_is_cleared() -> None:
    recorder = Recorder()
    standing = StandingErrors(recorder)
    reported = _object(BatchStatus.IN_PROGRESS, batch_errors("batch_stalled", "lost"))
    standing.hold(reported)
    await standing.publish_status(reported)
    await standing.publish_status(_object(BatchStatus.IN_PROGRESS))
    assert _codes(recorder.published[-1]) == ["batch_stalled"]
    standing.hold(_object(BatchStatus.IN_PROGRESS))  # cleared
    await standing.publish_status(_object(BatchStatus.IN_PROGRESS))
    assert _codes(recorder.published[-1]) == []


async def test_the_final_object_is_published_as_it_is_and_the_report_forgotten() -> None:
    recorder = Recorder()
    standing = StandingErrors(recorder)
    standing.hold(_object(BatchStatus.IN_PROGRESS, batch_errors("batch_stalled", "x")))
    await standing.publish_status(_object(BatchStatus.COMPLETED))
    await standing.publish_status(_object(BatchStatus.IN_PROGRESS))
    assert [_codes(batch) for batch in recorder.published] == [[], []]


async def test_batches_no_longer_owned_are_forgotten() -> None:
    recorder = Recorder()
    standing = StandingErrors(recorder)
    standing.hold(_object(BatchStatus.IN_PROGRESS, batch_errors("batch_stalled", "x")))
    standing.keep_only([])
    await standing.publish_status(_object(BatchStatus.IN_PROGRESS))
    assert _codes(recorder.published[-1]) == []
