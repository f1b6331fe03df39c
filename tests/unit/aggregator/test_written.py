"""A batch's files stored from the spool and indexed before anyone is told the batch is done,
and a written batch's object published again when a cancel comes too late."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.aggregator.spool import PrivateSpool
from llm_stream.aggregator.written import republish_written, store_spooled_files
from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, ExpiresAfter
from llm_stream.files.store import BatchFile, LocalFileStore, file_id
from tests.fakes import FakeStatusPublisher


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[PrivateSpool]:
    spool = PrivateSpool(tmp_path / "spool")
    spool.add("b1", [("a", True, b"a\n"), ("b", False, b"b\n"), ("c", True, b"c\n")])
    yield spool
    spool.close()


B1 = BatchManifest(batch_id="b1", request_count=3, endpoint="/v1/completions")


def _listed(store: LocalFileStore) -> list[str]:
    page = store.index.page(purpose=None, descending=False, after=None, limit=10)
    return sorted(record.id for record in page)


def test_the_output_and_error_files_hold_the_spooled_lines(
    tmp_path: Path, spool: PrivateSpool
) -> None:
    store = LocalFileStore(tmp_path / "batches")
    output_id, error_id = store_spooled_files(store, spool, B1, with_errors=True)
    assert (output_id, error_id) == (
        file_id("b1", BatchFile.OUTPUT),
        file_id("b1", BatchFile.ERROR),
    )
    assert b"".join(store.read(output_id)) == b"a\nc\n"
    assert b"".join(store.read(error_id)) == b"b\n"
    assert _listed(store) == sorted([output_id, error_id])


def test_without_errors_the_error_file_is_neither_named_nor_listed(
    tmp_path: Path, spool: PrivateSpool
) -> None:
    store = LocalFileStore(tmp_path / "batches")
    output_id, error_id = store_spooled_files(store, spool, B1, with_errors=False)
    assert error_id is None
    assert _listed(store) == [output_id]


def test_a_projects_expiring_files_are_indexed_once_as_its_own_before_and_after_the_marker(
    tmp_path: Path, spool: PrivateSpool
) -> None:
    store = LocalFileStore(tmp_path / "batches")
    policy = ExpiresAfter(anchor="created_at", seconds=7200)
    manifest = B1.model_copy(update={"project": "search", "output_expires_after": policy})
    output_id, error_id = store_spooled_files(store, spool, manifest, with_errors=True)

    def entries() -> list[str]:
        index = store.root / "_index"
        return sorted(str(path.relative_to(index)) for path in index.rglob("*") if path.is_file())

    before = entries()
    final = batch_object(
        manifest,
        BatchStatus.COMPLETED,
        reached_at={BatchStatus.COMPLETED: 1_700_000_000},
        output_file_id=output_id,
        error_file_id=error_id,
    )
    store.write("b1", BatchFile.BATCH, [final.model_dump_json().encode()])
    assert entries() == before  # the marker's indexing writes the same entries again
    assert len(before) == 4  # two index entries (the project's tree) and two expiry entries
    assert all(name.startswith(("projects/search/", "expiry/")) for name in before)
    written_at = store.file_record(output_id).created_at  # type: ignore[union-attr]
    listed = store.index.page(purpose=None, descending=False, after=None, limit=10)
    assert {(record.id, record.project, record.expires_at) for record in listed} == {
        (output_id, "search", written_at + 7200),
        (error_id, "search", written_at + 7200),
    }


def _written(store: LocalFileStore, status: BatchStatus) -> None:
    manifest = BatchManifest(batch_id="b1", request_count=1, endpoint="/v1/completions")
    batch = batch_object(manifest, status, reached_at={status: 1_700_000_000})
    store.write("b1", BatchFile.BATCH, [batch.model_dump_json().encode()])


async def test_a_cancel_after_the_batch_was_written_republishes_its_object(
    tmp_path: Path,
) -> None:
    store, status = LocalFileStore(tmp_path / "batches"), FakeStatusPublisher()
    _written(store, BatchStatus.COMPLETED)
    await republish_written(store, status, "b1")
    assert [(batch.id, batch.status) for batch in status.published] == [("b1", "completed")]


async def test_a_batch_written_as_cancelled_is_not_published_again(tmp_path: Path) -> None:
    store, status = LocalFileStore(tmp_path / "batches"), FakeStatusPublisher()
    _written(store, BatchStatus.CANCELLED)
    await republish_written(store, status, "b1")
    assert status.published == []


async def test_a_written_object_that_cannot_be_read_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Best effort: the cancel follower must go on."""
    store, status = LocalFileStore(tmp_path / "batches"), FakeStatusPublisher()
    with caplog.at_level(logging.WARNING, logger="llm_stream.aggregator.written"):
        await republish_written(store, status, "b1")  # nothing written
    assert status.published == []
    assert "batch b1: written object not republished" in caplog.text
