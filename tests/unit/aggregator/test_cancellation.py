"""A cancelled batch in the aggregator: ``cancelling`` while its lines arrive, written as
``cancelled`` with the results it holds (OpenAI's semantics), never shown ``in_progress`` again."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from llm_stream.batch.objects import batch_object, cancelling
from llm_stream.batch.result_lines import cancelled_result
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject, ResponseData, ResultMessage
from llm_stream.protocols import IncomingRecord
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.conftest import Make

TOPIC = "results"
CANCELLED_AT = 1_800_000_000


def _answered(batch_id: str, custom_id: str) -> ResultMessage:
    body = {"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
    return ResultMessage(
        batch_id=batch_id,
        id=f"batch_req_{custom_id}",
        custom_id=custom_id,
        response=ResponseData(status_code=200, request_id="r", body=body),
    )


def _records(results: list[ResultMessage], start: int = 0) -> list[IncomingRecord]:
    return [
        IncomingRecord(TOPIC, 0, start + i, result.model_dump_json().encode())
        for i, result in enumerate(results)
    ]


def _manifest(batch_id: str, count: int, window: str = "24h") -> BatchManifest:
    return BatchManifest(
        batch_id=batch_id, endpoint="/v1/completions", request_count=count, completion_window=window
    )


def _asked(manifest: BatchManifest, status: BatchStatus = BatchStatus.IN_PROGRESS) -> BatchObject:
    """What a client publishes: the latest object, moved to cancelling."""
    reached_at = {} if status is BatchStatus.VALIDATING else {status: manifest.created_at}
    latest = batch_object(manifest, status, reached_at=reached_at)
    return cancelling(latest, at=CANCELLED_AT)


def _openai_validates(batch: BatchObject) -> None:
    import openai.types as openai_types  # a dependency: its absence is a failure, not a skip

    openai_types.Batch.model_validate(batch.model_dump(mode="json"))


async def test_a_cancelled_batch_reports_cancelling_then_is_written_cancelled_with_what_finished(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, progress_interval=0)
    manifest = _manifest("b1", 4)
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([_answered("b1", "a")]))
    await aggregator.cancel(_asked(manifest))
    assert status.published[-1].status is BatchStatus.CANCELLING  # at once, not at the next line
    await aggregator.add_results(_records([_answered("b1", "b")], start=1))
    await aggregator.add_results(
        _records([cancelled_result("b1", "c"), cancelled_result("b1", "d")], start=2)
    )

    statuses = [batch.status for batch in status.published]
    assert statuses == ["in_progress", "cancelling", "cancelling", "cancelled"]
    final = status.published[-1]
    assert (final.cancelling_at, final.finalizing_at, final.completed_at) == (
        CANCELLED_AT,
        None,
        None,
    )
    assert final.cancelled_at is not None
    assert final.in_progress_at is not None
    assert final.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert final.usage.input_tokens == 6
    for batch in status.published:
        _openai_validates(batch)
        if batch.status is BatchStatus.CANCELLING:
            assert batch.cancelling_at == CANCELLED_AT
    written = orjson.loads((tmp_path / "b1" / "batch.json").read_bytes())
    assert written["status"] == "cancelled"
    output = (tmp_path / "b1" / "output.jsonl").read_bytes().splitlines()
    errors = (tmp_path / "b1" / "error.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(line)["custom_id"] for line in output) == ["a", "b"]
    assert [orjson.loads(line)["error"]["code"] for line in errors] == ["batch_cancelled"] * 2
    assert aggregator.committable() == {(TOPIC, 0): 4}


async def test_a_cancel_before_any_result_is_remembered_until_the_batch_opens(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, progress_interval=0)
    manifest = _manifest("b1", 2)
    await aggregator.cancel(_asked(manifest, BatchStatus.VALIDATING))
    assert status.published == []  # not open here: the client's object says it already
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([cancelled_result("b1", "a")]))
    await aggregator.add_results(_records([cancelled_result("b1", "b")], start=1))
    assert [batch.status for batch in status.published] == ["cancelling", "cancelled"]
    assert status.published[-1].output_file_id == "file-b1-output"  # empty, but named


async def test_a_batch_whose_last_lines_beat_its_cancel_here_is_still_written_cancelled(
    tmp_path: Path, make: Make
) -> None:
    """Workers saw the cancel and answered the rest ``batch_cancelled``; this aggregator's cancel
    follower had not yet: the lines say it, so the batch is not written ``completed``."""
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status)
    manifest = _manifest("b1", 3)
    await aggregator.add_manifests([manifest])
    before = int(time.time())
    lines = [_answered("b1", "a"), cancelled_result("b1", "b"), cancelled_result("b1", "c")]
    await aggregator.add_results(_records(lines))

    final = status.published[-1]
    assert (final.status, final.completed_at, final.finalizing_at) == ("cancelled", None, None)
    assert final.cancelling_at is not None
    assert before <= final.cancelling_at <= time.time()
    assert final.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 2}
    _openai_validates(final)
    written = orjson.loads((tmp_path / "b1" / "batch.json").read_bytes())
    assert written["status"] == "cancelled"

    await aggregator.cancel(_asked(manifest))  # the cancel's own object, late: nothing to redo
    assert [batch.status for batch in status.published] == ["cancelled"]


async def test_a_cancelled_line_marks_the_batch_cancelling_until_the_cancel_brings_its_time(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, progress_interval=0)
    manifest = _manifest("b1", 3)
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([cancelled_result("b1", "a")]))
    assert status.published[-1].status is BatchStatus.CANCELLING
    await aggregator.cancel(_asked(manifest))
    await aggregator.add_results(_records([cancelled_result("b1", f"{i}") for i in "bc"], 1))
    assert status.published[-1].status is BatchStatus.CANCELLED
    assert status.published[-1].cancelling_at == CANCELLED_AT


async def test_a_cancelled_batch_missing_lines_ends_cancelled_at_its_expiry(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status)
    manifest = _manifest("b1", 3, window="1h")
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([_answered("b1", "a")], start=7))
    await aggregator.cancel(_asked(manifest))
    assert aggregator.committable() == {(TOPIC, 0): 7}
    written = await aggregator.expire_overdue(now=manifest.created_at + 3600, owns=lambda _: True)
    assert written == ["b1"]
    final = status.published[-1]
    assert (final.status, final.expired_at) == (BatchStatus.CANCELLED, None)
    assert final.request_counts.completed == 1
    assert aggregator.committable() == {(TOPIC, 0): 8}
    _openai_validates(final)


async def test_a_cancel_that_comes_after_the_batch_was_written_puts_its_status_back(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status)
    manifest = _manifest("b1", 1)
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([_answered("b1", "a")]))
    assert status.published[-1].status is BatchStatus.COMPLETED
    await aggregator.cancel(_asked(manifest))  # lost the race: the topic now says cancelling
    assert [batch.status for batch in status.published] == ["completed", "completed"]
    assert status.published[-1] == status.published[0]

    restarted = make(tmp_path, FakeStatusPublisher())
    cancelled = cancelling(status.published[0].model_copy(update={"status": "in_progress"}), 1)
    done = cancelled.model_copy(update={"status": BatchStatus.CANCELLED, "cancelled_at": 2})
    await restarted.cancel(done)  # a batch cancelled long ago: nothing to say
    assert restarted.batches_written == 0


async def test_an_orphan_is_failed_even_if_someone_asked_to_cancel_it(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, orphan_timeout=0)
    await aggregator.cancel(_asked(_manifest("orphan", 1)))
    await aggregator.add_results(_records([_answered("orphan", "a")]))
    assert await aggregator.fail_orphans(now=time.time() + 1) == ["orphan"]
    assert status.published[-1].status is BatchStatus.FAILED
    assert status.published[-1].cancelling_at is None
