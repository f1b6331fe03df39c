"""The S3 file store against a real S3 server on loopback (moto's, in its own process): the
``FileStore`` semantics of the local store, keys under the prefix only, uploads in parts with
bounded memory, failed uploads leaving nothing."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from llm_stream.files.opening import open_store
from llm_stream.files.records import StoredFile, new_upload_id
from llm_stream.files.s3 import PART_BYTES, S3FileStore
from llm_stream.files.store import CHUNK_BYTES, BatchFile, FileStore
from llm_stream.settings import Settings
from tests.s3_harness import new_bucket, s3_server

PREFIX = "tenant/batches"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
def store(endpoint: str) -> S3FileStore:
    """A store in a bucket of the test's own, built as every process builds it."""
    settings = Settings(
        storage_url=f"s3://{new_bucket(endpoint)}/{PREFIX}/", s3_endpoint_url=endpoint
    )
    opened = open_store(settings)
    assert isinstance(opened, S3FileStore)
    return opened


def _keys(store: S3FileStore) -> list[str]:
    """Every key in the store's bucket, prefix or not, but the files' index's."""
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    keys = [stored["Key"] for stored in listed.get("Contents", [])]
    return [key for key in keys if not key.startswith(f"{PREFIX}/_index/")]


def _index_entries(store: S3FileStore) -> list[str]:
    """The files' index's entries (its keys but the marker that earlier files are indexed)."""
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"{PREFIX}/_index/")
    keys = [stored["Key"] for stored in listed.get("Contents", [])]
    return [key for key in keys if key != f"{PREFIX}/_index/built"]


def _listed(store: S3FileStore) -> list[StoredFile]:
    return store.index.page(purpose=None, descending=True, after=None, limit=100)


def _unfinished_uploads(store: S3FileStore) -> list[Any]:
    uploads: list[Any] = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return uploads


def _pieces(count: int, size: int = MIB) -> Iterator[bytes]:
    """``count`` pieces made one at a time: the whole is never in the test's memory."""
    for index in range(count):
        yield bytes([97 + index % 26]) * (size - 1) + b"\n"


def test_batch_files_are_written_and_read_in_the_local_layout_under_the_prefix(
    store: S3FileStore,
) -> None:
    files: FileStore = store
    written = files.write("b1", BatchFile.OUTPUT, iter([b'{"a":1}\n{"b"', b":2}\n", b"last"]))
    assert written == "file-b1-output"
    assert list(files.read(written)) == [b'{"a":1}\n', b'{"b":2}\n', b"last"]
    assert list(files.read(files.write("b1", BatchFile.ERROR, []))) == []
    assert _keys(store) == [f"{PREFIX}/b1/error.jsonl", f"{PREFIX}/b1/output.jsonl"]
    with pytest.raises(FileNotFoundError):
        list(files.read("file-nothing-output"))
    with pytest.raises(ValueError, match="not a batch file id"):
        list(files.read("file-b1-answers"))


def test_a_batch_is_written_once_its_marker_is_and_deleted_marker_first(
    store: S3FileStore,
) -> None:
    for kind in (BatchFile.OUTPUT, BatchFile.ERROR):
        store.write("b1", kind, [b"x\n"])
    store.write("b10", BatchFile.BATCH, [b"{}\n"])  # shares b1's first characters
    assert not store.is_written("b1")
    store.write("b1", BatchFile.BATCH, [b"{}\n"])
    store.link_input("b1", "file-0123456789abcdef0123456789abcdef")
    assert store.is_written("b1")
    assert store.linked_input("b1") == "file-0123456789abcdef0123456789abcdef"

    assert len(_index_entries(store)) == 0  # the markers name no files
    store.delete("b1")
    assert not store.is_written("b1")
    assert store.linked_input("b1") is None
    assert _keys(store) == [f"{PREFIX}/b10/batch.json"]
    store.delete("b1")  # idempotent
    store.delete("never")
    assert store.is_written("b10")


def test_a_failed_write_leaves_the_earlier_object_whole_and_no_parts(store: S3FileStore) -> None:
    store.write("b1", BatchFile.OUTPUT, [b"old\n"])

    def breaks(after: int) -> Iterator[bytes]:
        yield from _pieces(after)
        raise OSError("disk full")

    for after in (1, 20):  # inside the first part (one PUT), and after two parts were sent
        with pytest.raises(OSError, match="disk full"):
            store.write("b1", BatchFile.OUTPUT, breaks(after))
        assert list(store.read("file-b1-output")) == [b"old\n"]
        assert _unfinished_uploads(store) == []
    assert _keys(store) == [f"{PREFIX}/b1/output.jsonl"]


def test_an_upload_and_its_record_are_read_by_any_store_on_the_prefix(
    store: S3FileStore, endpoint: str
) -> None:
    upload_id = new_upload_id()
    record = store.write_upload(upload_id, [b"a" * 10, b"b" * 5], filename="in.jsonl", created_at=7)
    assert (record.id, record.bytes, record.created_at, record.purpose) == (
        upload_id,
        15,
        7,
        "batch",
    )
    assert _keys(store) == [f"{PREFIX}/_uploads/{upload_id}", f"{PREFIX}/_uploads/{upload_id}.json"]

    replica = S3FileStore.from_url(f"s3://{store.bucket}/{PREFIX}", endpoint_url=endpoint)
    assert replica.file_record(upload_id) == record
    assert _listed(replica) == [record]
    assert b"".join(replica.read_chunks(upload_id)) == b"a" * 10 + b"b" * 5
    with replica.local_copy(upload_id) as path:
        assert path.read_bytes() == b"a" * 10 + b"b" * 5
    assert not path.exists()  # the download is removed after the block

    elsewhere = S3FileStore.from_url(f"s3://{store.bucket}/other", endpoint_url=endpoint)
    assert elsewhere.file_record(upload_id) is None
    assert _listed(elsewhere) == []


def test_listing_holds_uploads_and_the_files_written_batches_name(store: S3FileStore) -> None:
    upload = store.write_upload(new_upload_id(), [b"x\n"], filename="f", created_at=1)
    store.write("b1", BatchFile.OUTPUT, [b"line\n"])
    store.write("b1", BatchFile.ERROR, [b"bad\n", b"worse\n"])
    store.write("b2", BatchFile.OUTPUT, [b"unfinished\n"])  # no marker: not listed
    assert {record.id for record in _listed(store)} == {upload.id}

    store.write("b1", BatchFile.BATCH, [b'{"output_file_id": "file-b1-output", '])
    assert {record.id for record in _listed(store)} == {upload.id}  # unreadable marker
    assert {record.id for record in store.scan_file_records()} == {upload.id}
    marker = b'{"output_file_id": "file-b1-output", "error_file_id": "file-b1-error"}'
    store.write("b1", BatchFile.BATCH, [marker])
    listed = {record.id: record for record in _listed(store)}
    assert listed == {record.id: record for record in store.scan_file_records()}
    assert set(listed) == {upload.id, "file-b1-output", "file-b1-error"}
    assert (listed["file-b1-error"].bytes, listed["file-b1-error"].purpose) == (10, "batch_output")
    assert listed["file-b1-output"] == store.file_record("file-b1-output")
    assert listed["file-b1-output"].filename == "b1_output.jsonl"
    assert store.file_record("file-b1-batch") is None  # the marker is no file of the API
    assert store.file_record("file-b2-error") is None


def test_deleting_a_file_removes_record_first_then_content(store: S3FileStore) -> None:
    upload_id = new_upload_id()
    store.write_upload(upload_id, [b"x"], filename="f", created_at=0)
    store.write("b1", BatchFile.OUTPUT, [b"line\n"])
    assert store.delete_file(upload_id) is True
    assert store.file_record(upload_id) is None
    assert store.delete_file(upload_id) is False
    with pytest.raises(FileNotFoundError):
        list(store.read_chunks(upload_id))
    with pytest.raises(FileNotFoundError), store.local_copy(upload_id):
        pass
    assert store.delete_file("file-b1-output") is True
    assert store.delete_file("file-b1-output") is False
    assert store.delete_file("file-b1-batch") is False
    assert _keys(store) == []
    assert _index_entries(store) == []


def test_a_large_upload_goes_in_parts_and_streams_back_with_bounded_memory(
    store: S3FileStore,
) -> None:
    size_mib = 64  # eight parts
    upload_id = new_upload_id()
    tracemalloc.start()
    try:
        record = store.write_upload(upload_id, _pieces(size_mib), filename="big", created_at=0)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total, largest = 0, 0
        for chunk in store.read_chunks(upload_id):
            total, largest = total + len(chunk), max(largest, len(chunk))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record.bytes == total == size_mib * MIB
    assert largest <= CHUNK_BYTES
    assert upload_peak < 2 * PART_BYTES + 4 * MIB, upload_peak  # a part, not the file
    assert read_peak < 4 * CHUNK_BYTES, read_peak
    head = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/_uploads/{upload_id}")
    assert head["ETag"].strip('"').endswith(f"-{size_mib * MIB // PART_BYTES}")  # multipart


@pytest.mark.parametrize("batch_id", ["../escape", "..", "a/b", "", "/abs", "b1/../../x"])
def test_an_unsafe_batch_id_never_becomes_a_key(store: S3FileStore, batch_id: str) -> None:
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.write(batch_id, BatchFile.OUTPUT, [b"x\n"])
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.is_written(batch_id)
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.delete(batch_id)
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.link_input(batch_id, new_upload_id())
    assert store.linked_input(batch_id) is None
    assert _keys(store) == []


@pytest.mark.parametrize(
    "value", ["file-../../x", "file-../x-output", "../file-b1-output", "file-ABC", "/etc/passwd"]
)
def test_an_id_that_names_no_file_never_becomes_a_key(store: S3FileStore, value: str) -> None:
    with pytest.raises(ValueError, match="not an upload id"):
        store.write_upload(value, [b"x"], filename="f", created_at=0)
    assert store.file_record(value) is None
    assert store.delete_file(value) is False
    with pytest.raises(ValueError, match="not a batch file id"):
        list(store.read_chunks(value))
    with pytest.raises(ValueError, match="not a batch file id"), store.local_copy(value):
        pass
    assert _keys(store) == []
