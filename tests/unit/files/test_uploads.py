"""The file store's uploads: content and record stored together, listed for every replica,
streamed in bounded pieces, deleted record first; a batch remembers the upload it came from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.files.records import new_upload_id
from llm_stream.files.store import CHUNK_BYTES, UPLOADS_DIR, BatchFile, LocalFileStore


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "out")


def test_an_upload_is_stored_with_its_record_which_any_store_on_the_root_reads(
    store: LocalFileStore,
) -> None:
    upload_id = new_upload_id()
    record = store.write_upload(
        upload_id, [b"a" * 10, b"b" * 5], filename="in.jsonl", created_at=1_700_000_000
    )
    assert (record.id, record.bytes, record.purpose) == (upload_id, 15, "batch")
    other_replica = LocalFileStore(store.root)
    assert other_replica.file_record(upload_id) == record
    assert other_replica.index.page(purpose=None, descending=True, after=None, limit=9) == [record]
    assert b"".join(other_replica.read_chunks(upload_id)) == b"a" * 10 + b"b" * 5
    with other_replica.local_copy(upload_id) as path:
        assert path.read_bytes() == b"a" * 10 + b"b" * 5


def test_content_streams_in_bounded_pieces_even_as_one_long_line(store: LocalFileStore) -> None:
    upload_id = new_upload_id()
    store.write_upload(upload_id, [b"x" * (2 * CHUNK_BYTES + 1)], filename="f", created_at=0)
    assert [len(chunk) for chunk in store.read_chunks(upload_id)] == [
        CHUNK_BYTES,
        CHUNK_BYTES,
        1,
    ]


def test_an_upload_that_fails_part_way_leaves_nothing(store: LocalFileStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"first part"
        raise ConnectionResetError("client went away")

    upload_id = new_upload_id()
    with pytest.raises(ConnectionResetError):
        store.write_upload(upload_id, broken(), filename="f", created_at=0)
    assert store.file_record(upload_id) is None
    assert list((store.root / UPLOADS_DIR).iterdir()) == []


def test_deleting_removes_the_record_and_the_content(store: LocalFileStore) -> None:
    upload_id = new_upload_id()
    store.write_upload(upload_id, [b"x"], filename="f", created_at=0)
    assert store.delete_file(upload_id) is True
    assert store.file_record(upload_id) is None
    assert list((store.root / UPLOADS_DIR).iterdir()) == []
    assert store.delete_file(upload_id) is False
    with pytest.raises(FileNotFoundError):
        list(store.read_chunks(upload_id))


def test_batch_files_have_records_from_the_files_themselves(store: LocalFileStore) -> None:
    store.write("b1", BatchFile.OUTPUT, [b"line\n"])
    record = store.file_record("file-b1-output")
    assert record is not None
    assert (record.bytes, record.purpose, record.filename) == (5, "batch_output", "b1_output.jsonl")
    assert store.file_record("file-b1-error") is None  # not stored
    store.write("b1", BatchFile.BATCH, [b"{}"])
    assert store.file_record("file-b1-batch") is None  # the marker is no file of the API
    assert (
        store.index.page(purpose=None, descending=True, after=None, limit=9) == []
    )  # the batch object names no file


def test_a_batch_remembers_the_upload_it_was_created_from(store: LocalFileStore) -> None:
    assert store.linked_input("b1") is None
    store.link_input("b1", "file-0123456789abcdef0123456789abcdef")
    assert store.linked_input("b1") == "file-0123456789abcdef0123456789abcdef"
    assert store.linked_input("../x") is None
    store.delete("b1")
    assert store.linked_input("b1") is None
