from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from llm_stream.batch.status import BatchStatus, InvalidTransitionError
from llm_stream.contracts import BatchManifest, BatchObject, ResponseData, ResultMessage
from llm_stream.files.store import LocalFileStore
from llm_stream.protocols import IncomingRecord
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.conftest import Make

TOPIC = "results"


def _result(batch_id: str, custom_id: str, status: int = 200) -> bytes:
    result = ResultMessage(
        batch_id=batch_id,
        id=f"batch_req_{custom_id}",
        custom_id=custom_id,
        response=ResponseData(status_code=status, request_id="r", body={"ok": status == 200}),
    )
    return result.model_dump_json().encode()


def _records(values: list[bytes], start: int = 0, partition: int = 0) -> list[IncomingRecord]:
    return [IncomingRecord(TOPIC, partition, start + i, v) for i, v in enumerate(values)]


def _manifest(batch_id: str, count: int) -> BatchManifest:
    return BatchManifest(
        batch_id=batch_id, endpoint="/v1/completions", request_count=count, metadata={"k": "v"}
    )


@pytest.fixture
def status() -> FakeStatusPublisher:
    return FakeStatusPublisher()


def _always(batch_id: str) -> bool:
    return True


async def test_a_complete_batch_is_written_once_with_duplicates_dropped(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    await aggregator.add_manifests([_manifest("b1", 3)])
    await aggregator.add_results(
        _records([_result("b1", "a"), _result("b1", "a"), _result("b1", "b", status=400)])
    )
    assert not (tmp_path / "b1").exists()
    await aggregator.add_results(_records([_result("b1", "c"), _result("b1", "b")], start=3))

    output = (tmp_path / "b1" / "output.jsonl").read_bytes().splitlines()
    errors = (tmp_path / "b1" / "error.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["custom_id"] for line in output] == ["a", "c"]
    assert [orjson.loads(line)["custom_id"] for line in errors] == ["b"]
    assert "batch_id" not in orjson.loads(output[0])
    batch = orjson.loads((tmp_path / "b1" / "batch.json").read_bytes())
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert batch["metadata"] == {"k": "v"}
    assert status.published[-1].status == "completed"
    assert status.published[-1].output_file_id == "file-b1-output"
    assert status.published[-1].error_file_id == "file-b1-error"
    assert batch["output_file_id"] == "file-b1-output"
    assert not (tmp_path / ".spool").exists()  # the spool is private, not in the output dir
    assert aggregator.received("b1") == 0


async def test_results_before_the_manifest_wait_for_it(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    await aggregator.add_results(_records([_result("b1", "a")]))
    assert aggregator.open_batches == 1
    await aggregator.add_manifests([_manifest("b1", 1)])
    assert (tmp_path / "b1" / "batch.json").exists()
    assert aggregator.open_batches == 0


async def test_late_duplicates_of_a_written_batch_change_nothing(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    await aggregator.add_manifests([_manifest("b1", 1)])
    await aggregator.add_results(_records([_result("b1", "a")]))
    before = (tmp_path / "b1" / "output.jsonl").read_bytes()
    restarted = make(tmp_path, FakeStatusPublisher())  # no memory of b1
    await restarted.add_manifests([_manifest("b1", 1)])
    await restarted.add_results(_records([_result("b1", "a")], start=1))
    assert restarted.open_batches == 0
    assert restarted.batches_written == 0
    assert (tmp_path / "b1" / "output.jsonl").read_bytes() == before


async def test_commits_stop_at_the_earliest_unfinished_batch(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    await aggregator.add_manifests([_manifest("done", 1)])
    await aggregator.add_manifests([_manifest("open", 2)])
    values = [_result("other", "x"), _result("open", "a"), _result("done", "z")]
    await aggregator.add_results(_records(values, start=10))
    await aggregator.add_results(_records([_result("p1", "q")], start=4, partition=1))
    assert aggregator.committable() == {(TOPIC, 0): 10, (TOPIC, 1): 4}
    await aggregator.add_manifests([_manifest("other", 1)])
    assert aggregator.committable() == {(TOPIC, 0): 11, (TOPIC, 1): 4}
    await aggregator.add_results(_records([_result("open", "b")], start=13))
    assert aggregator.committable() == {(TOPIC, 0): 14, (TOPIC, 1): 4}


def invalid_results() -> float:
    """Records the aggregator skipped as not results, so far in this process."""
    return REGISTRY.get_sample_value("llm_stream_aggregator_results_invalid_total") or 0.0


async def test_invalid_results_are_skipped_and_counted(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    before = invalid_results()
    await aggregator.add_results(_records([b"nonsense", b'{"batch_id": "../x"}']))
    assert invalid_results() - before == 2
    assert aggregator.open_batches == 0
    assert aggregator.committable() == {(TOPIC, 0): 2}


async def test_progress_is_published_while_results_arrive(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status, progress_interval=0)
    await aggregator.add_manifests([_manifest("b1", 3)])
    await aggregator.add_results(_records([_result("b1", "a")]))
    await aggregator.add_results(_records([_result("b1", "b", status=500)], start=1))
    assert [s.status for s in status.published] == ["in_progress", "in_progress"]
    assert status.published[-1].request_counts.failed == 1


async def test_released_partitions_drop_their_batches(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    await aggregator.add_results(_records([_result("b1", "a")]))
    aggregator.release([(TOPIC, 0)])
    assert aggregator.open_batches == 0
    assert aggregator.committable() == {}


async def test_the_oldest_open_batch_age_is_exported(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    from prometheus_client import CollectorRegistry

    from llm_stream.ops.metrics import OpenBatchGauges

    aggregator = make(tmp_path, status)
    registry = CollectorRegistry()
    registry.register(
        OpenBatchGauges(lambda: aggregator.open_batches, aggregator.oldest_open_batch_age)
    )
    assert aggregator.oldest_open_batch_age() == 0.0
    await aggregator.add_results(_records([_result("stuck", "a")]))
    aggregator._open["stuck"].in_progress_at -= 120
    assert 120 <= aggregator.oldest_open_batch_age() < 130
    age = registry.get_sample_value("llm_stream_oldest_open_batch_age_seconds")
    assert age is not None
    assert 120 <= age < 130
    assert registry.get_sample_value("llm_stream_batches_open") == 1


async def test_an_overdue_batch_is_written_as_expired_and_stops_holding_commits(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    manifest = _manifest("late", 3).model_copy(update={"completion_window": "1h"})
    await aggregator.add_manifests([manifest])
    await aggregator.add_results(_records([_result("late", "a"), _result("other", "x")], start=5))
    assert aggregator.committable() == {(TOPIC, 0): 5}
    assert await aggregator.expire_overdue(now=manifest.created_at + 3599, owns=_always) == []
    assert await aggregator.expire_overdue(now=manifest.created_at + 3600, owns=_always) == ["late"]

    batch = orjson.loads((tmp_path / "late" / "batch.json").read_bytes())
    assert batch["status"] == "expired"
    assert batch["expired_at"] is not None
    assert batch["completed_at"] is None
    assert batch["request_counts"] == {"total": 3, "completed": 1, "failed": 0}
    assert status.published[-1].status == "expired"
    assert aggregator.committable() == {(TOPIC, 0): 6}  # only "other" holds the partition now
    await aggregator.add_results(_records([_result("late", "b")], start=7))
    assert len((tmp_path / "late" / "output.jsonl").read_bytes().splitlines()) == 1


async def test_every_published_object_is_an_openai_batch_naming_its_files_by_id(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    import openai.types as openai_types  # a dependency: its absence is a failure, not a skip

    aggregator = make(tmp_path, status, progress_interval=0, orphan_timeout=0)
    await aggregator.add_manifests([_manifest("b1", 2)])
    await aggregator.add_results(_records([_result("b1", "a")]))
    await aggregator.add_results(_records([_result("b1", "b", status=400)], start=1))
    await aggregator.add_manifests([_manifest("late", 1).model_copy(update={"created_at": 0})])
    await aggregator.expire_overdue(owns=_always)
    await aggregator.add_results(_records([_result("orphan", "x")], start=2))
    await aggregator.fail_orphans(now=time.time() + 1)

    statuses = [(batch.id, batch.status) for batch in status.published]
    assert statuses == [
        ("b1", BatchStatus.IN_PROGRESS),
        ("b1", BatchStatus.COMPLETED),
        ("late", BatchStatus.EXPIRED),
        ("orphan", BatchStatus.FAILED),
    ]
    for batch in status.published:
        openai_types.Batch.model_validate(batch.model_dump(mode="json"))
    final = status.published[1]
    assert final.finalizing_at is not None
    store = LocalFileStore(tmp_path)
    assert [orjson.loads(line)["custom_id"] for line in store.read(final.output_file_id)] == ["a"]
    assert final.error_file_id is not None
    assert [orjson.loads(line)["custom_id"] for line in store.read(final.error_file_id)] == ["b"]
    assert status.published[2].error_file_id is None  # nothing failed: no error file to name


async def test_a_batch_is_never_finalized_into_a_status_that_does_not_end_finalizing(
    tmp_path: Path, status: FakeStatusPublisher, make: Make
) -> None:
    aggregator = make(tmp_path, status)
    with pytest.raises(InvalidTransitionError):
        await aggregator._write(_manifest("b1", 1), BatchStatus.CANCELLED)
    assert not (tmp_path / "b1").exists()


async def test_a_written_batchs_files_are_listed_before_its_final_status_is_published(
    tmp_path: Path, make: Make
) -> None:
    """Whoever is told a batch is done (the status topic) lists its files at once."""
    store = LocalFileStore(tmp_path)
    listed_at_publish: list[set[str]] = []

    class ListingStatus(FakeStatusPublisher):
        async def publish_status(self, batch: BatchObject) -> None:
            page = store.index.page(purpose=None, descending=True, after=None, limit=10)
            listed_at_publish.append({record.id for record in page})
            await super().publish_status(batch)

    status = ListingStatus()
    aggregator = make(tmp_path, status)
    await aggregator.add_manifests([_manifest("b1", 2)])
    await aggregator.add_results(_records([_result("b1", "a"), _result("b1", "b", status=400)]))
    final = status.published[-1]
    assert final.status is BatchStatus.COMPLETED
    assert final.output_file_id is not None
    assert final.error_file_id is not None
    assert listed_at_publish[-1] == {final.output_file_id, final.error_file_id}
