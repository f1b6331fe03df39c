"""``BatchHandle`` holds only its batch id: every question goes to its client, so it never
answers with a stale state of its own."""

from __future__ import annotations

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.handle import BatchHandle, BatchReader
from llm_stream.contracts import BatchManifest, BatchObject

BATCH = batch_object(
    BatchManifest(batch_id="b1", endpoint="/v1/completions", request_count=1, created_at=1),
    BatchStatus.VALIDATING,
)


class RecordingReader:
    """Answers every question with ``BATCH`` and records who asked what."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def retrieve(self, batch_id: str) -> BatchObject | None:
        self.calls.append(("retrieve", batch_id))
        return BATCH

    async def wait(self, batch_id: str, timeout: float) -> BatchObject | None:  # noqa: ASYNC109
        self.calls.append(("wait", batch_id, timeout))
        return BATCH

    async def cancel(self, batch_id: str) -> BatchObject | None:
        self.calls.append(("cancel", batch_id))
        return None


async def test_a_handle_asks_its_reader_about_its_own_batch_and_returns_the_answer() -> None:
    """Retrieve, wait and cancel are the client's, for this batch id; nothing is cached."""
    recording = RecordingReader()
    reader: BatchReader = recording
    handle = BatchHandle("b1", reader)
    assert await handle.retrieve() is BATCH
    assert await handle.wait(2.5) is BATCH
    assert await handle.cancel() is None
    assert await handle.retrieve() is BATCH
    assert recording.calls == [
        ("retrieve", "b1"),
        ("wait", "b1", 2.5),
        ("cancel", "b1"),
        ("retrieve", "b1"),
    ]


def test_a_handle_shows_its_batch_id() -> None:
    """Logs and tracebacks name the batch a handle stands for."""
    handle = BatchHandle("batch_abc", RecordingReader())
    assert handle.batch_id == "batch_abc"
    assert repr(handle) == "BatchHandle('batch_abc')"
