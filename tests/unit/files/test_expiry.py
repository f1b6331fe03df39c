"""Files that expire, on a local directory and on S3 (moto's server): an upload's and a batch's
files' ``expires_at`` in their records and listings, the expiry entries walked oldest first up
to now, the sweep deleting what is due (content, record, index entries) and nothing else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from llm_stream.files.expiry import due, entry_path
from llm_stream.files.opening import open_store
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, FileStore, LocalFileStore, file_id
from llm_stream.files.upkeep import sweep_expired
from llm_stream.settings import Settings
from tests.s3_harness import new_bucket, s3_server

#: Now, as batch files written in the tests are stamped with the clock.
T = int(time.time())


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FileStore:
    if request.param == "local":
        return LocalFileStore(tmp_path / "out")
    endpoint = request.getfixturevalue("endpoint")
    settings = Settings(storage_url=f"s3://{new_bucket(endpoint)}/p/", s3_endpoint_url=endpoint)
    return open_store(settings)


def _upload(store: FileStore, expires_at: int | None) -> str:
    upload_id = new_upload_id()
    store.write_upload(
        upload_id, [b"{}\n"], filename="in.jsonl", created_at=T, expires_at=expires_at
    )
    return upload_id


def _written_batch(store: FileStore, batch_id: str, seconds: int | None) -> list[str]:
    """A batch written as the aggregator writes one, its object naming the expiry policy."""
    ids = [store.write(batch_id, kind, [b"{}\n"]) for kind in (BatchFile.OUTPUT, BatchFile.ERROR)]
    marker = {"id": batch_id, "output_file_id": ids[0], "error_file_id": ids[1]}
    if seconds is not None:
        marker["output_expires_after"] = {"anchor": "created_at", "seconds": seconds}  # type: ignore[assignment]
    store.write(batch_id, BatchFile.BATCH, [orjson.dumps(marker)])
    return ids


def _listed(store: FileStore, now: float | None = None) -> dict[str, int | None]:
    page = store.index.page(purpose=None, descending=True, after=None, limit=100, now=now)
    return {record.id: record.expires_at for record in page}


def test_records_and_listings_carry_when_files_expire(store: FileStore) -> None:
    soon, never = _upload(store, T + 3600), _upload(store, None)
    output, error = _written_batch(store, "b1", 7200)
    kept, _ = _written_batch(store, "b2", None)
    written_at = store.file_record(output).created_at  # type: ignore[union-attr]
    assert store.file_record(soon).expires_at == T + 3600  # type: ignore[union-attr]
    assert store.file_record(never).expires_at is None  # type: ignore[union-attr]
    assert store.file_record(output).expires_at == written_at + 7200  # type: ignore[union-attr]
    assert store.file_record(kept).expires_at is None  # type: ignore[union-attr]
    listed = _listed(store)
    assert listed[soon] == T + 3600
    assert listed[error] == written_at + 7200
    assert listed[never] is None
    # Past an expiry, before any sweep: listed no more.
    assert soon not in _listed(store, now=T + 3600)
    assert never in _listed(store, now=T + 3600)


def test_due_walks_entries_oldest_first_up_to_now_only(store: FileStore) -> None:
    expiring = {_upload(store, T + offset): T + offset for offset in (300, 100, 200, 10**6)}
    _upload(store, None)
    found = due(store.index.tree, now=T + 250)
    assert found == sorted((at, upload) for upload, at in expiring.items() if at <= T + 250)
    assert due(store.index.tree, now=T + 250, limit=1) == found[:1]
    assert due(store.index.tree, now=T) == []


def test_the_sweep_deletes_what_is_due_and_nothing_else(store: FileStore) -> None:
    gone, stays, never = _upload(store, T + 10), _upload(store, T + 10**6), _upload(store, None)
    output, error = _written_batch(store, "b1", 3600)
    written_at = store.file_record(output).created_at  # type: ignore[union-attr]
    assert sweep_expired(store, now=T + 10) == 1
    assert store.file_record(gone) is None
    with pytest.raises(FileNotFoundError):
        b"".join(store.read_chunks(gone))
    assert {stays, never, output, error} <= set(_listed(store))
    assert gone not in _listed(store)

    assert sweep_expired(store, now=written_at + 3600) == 2  # the batch's two files
    assert store.file_record(output) is None
    assert store.file_record(error) is None
    assert store.is_written("b1")  # its batch object stays: it still names them, as OpenAI's
    assert set(_listed(store)) == {stays, never}
    assert due(store.index.tree, now=written_at + 3600) == []
    assert sweep_expired(store, now=written_at + 3600) == 0


def test_a_file_deleted_or_written_again_leaves_no_entry_that_deletes_it(store: FileStore) -> None:
    deleted = _upload(store, T + 10)
    assert store.delete_file(deleted)
    assert due(store.index.tree, now=T + 10) == []  # its entry went with it
    # An entry whose file is gone (a crash between the two) is only removed.
    store.index.tree.put(entry_path(T + 5, file_id("b9", BatchFile.OUTPUT)), b"")
    assert sweep_expired(store, now=T + 10) == 0
    assert due(store.index.tree, now=T + 10) == []
    # A batch written again under another policy: the earlier entry does not delete it.
    output, _ = _written_batch(store, "b3", 3600)
    first = store.file_record(output).expires_at  # type: ignore[union-attr]
    store.index.tree.put(entry_path(T, output), b"")  # as an earlier write's entry
    assert sweep_expired(store, now=T + 1) == 0
    assert store.file_record(output).expires_at == first  # type: ignore[union-attr]
