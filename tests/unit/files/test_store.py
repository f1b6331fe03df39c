from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.files.store import (
    BATCH_FILE,
    ERROR_FILE,
    OUTPUT_FILE,
    BatchFile,
    FileStore,
    LocalFileStore,
    file_id,
    parse_file_id,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "out")


def test_the_local_store_is_a_file_store(store: LocalFileStore) -> None:
    files: FileStore = store
    assert files is store


def test_file_ids_are_openai_style_ids_not_paths() -> None:
    assert file_id("b-1_x", BatchFile.OUTPUT) == "file-b-1_x-output"
    assert file_id("b-1_x", BatchFile.ERROR) == "file-b-1_x-error"
    for kind in BatchFile:
        assert parse_file_id(file_id("b-1_x", kind)) == ("b-1_x", kind)


@pytest.mark.parametrize(
    "value",
    ["b1-output", "file-b1", "file-b1-answers", "file--output", "file-../x-output", "/tmp/x"],
)
def test_an_id_that_names_no_batch_file_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a batch file id"):
        parse_file_id(value)


def test_an_unsafe_batch_id_gets_no_file_id() -> None:
    with pytest.raises(ValueError, match="unsafe batch id"):
        file_id("../etc", BatchFile.OUTPUT)


def test_write_then_read_by_id_in_the_documented_layout(
    store: LocalFileStore, tmp_path: Path
) -> None:
    written = store.write("b1", BatchFile.OUTPUT, iter([b'{"a":1}\n', b'{"b":2}\n']))
    assert written == "file-b1-output"
    assert list(store.read(written)) == [b'{"a":1}\n', b'{"b":2}\n']
    assert (tmp_path / "out" / "b1" / OUTPUT_FILE).read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert store.path_of(written) == tmp_path / "out" / "b1" / OUTPUT_FILE
    assert store.path_of(file_id("b1", BatchFile.ERROR)).name == ERROR_FILE


def test_an_empty_file_reads_as_no_lines(store: LocalFileStore) -> None:
    assert list(store.read(store.write("b1", BatchFile.ERROR, []))) == []


def test_reading_a_missing_file_raises(store: LocalFileStore) -> None:
    with pytest.raises(FileNotFoundError):
        list(store.read("file-nothing-output"))


def test_a_batch_is_written_once_its_batch_object_is(store: LocalFileStore) -> None:
    store.write("b1", BatchFile.OUTPUT, [b"x\n"])
    store.write("b1", BatchFile.ERROR, [])
    assert not store.is_written("b1")
    store.write("b1", BatchFile.BATCH, [b"{}\n"])
    assert store.is_written("b1")
    assert (store.root / "b1" / BATCH_FILE).read_bytes() == b"{}\n"


def test_a_failed_write_leaves_the_earlier_file_whole(store: LocalFileStore) -> None:
    store.write("b1", BatchFile.OUTPUT, [b"old\n"])

    def breaks() -> Iterator[bytes]:
        yield b"new\n"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.write("b1", BatchFile.OUTPUT, breaks())
    assert list(store.read("file-b1-output")) == [b"old\n"]
    assert [path.name for path in (store.root / "b1").iterdir()] == [OUTPUT_FILE]


def test_delete_removes_every_file_and_is_idempotent(store: LocalFileStore) -> None:
    for kind in BatchFile:
        store.write("b1", kind, [b"x\n"])
    store.delete("b1")
    assert not store.is_written("b1")
    assert not (store.root / "b1").exists()
    store.delete("b1")
    store.delete("never")


def test_an_unsafe_batch_id_never_becomes_a_path(store: LocalFileStore) -> None:
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.write("../escape", BatchFile.OUTPUT, [b"x\n"])
    with pytest.raises(ValueError, match="unsafe batch id"):
        store.is_written("..")
    assert not (store.root.parent / "escape").exists()
