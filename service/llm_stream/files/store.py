"""Where a batch's files live, addressed by file id rather than by a path on one host.

A batch object names its output and error files by id (``file-<batch_id>-output``, like
OpenAI's ``file-...`` ids), so that a reader on any host asks a store for the content instead of
opening a path that only exists where the aggregator ran. ``LocalFileStore`` keeps the layout
users and tests rely on: ``<root>/<batch_id>/output.jsonl``, ``error.jsonl`` and ``batch.json``,
the last written only once the others are complete (the marker that the batch is written).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from llm_stream.contracts import is_safe_batch_id
from llm_stream.files.atomic import fsync_directory, write_atomically

_FILE_ID_PREFIX = "file-"


class BatchFile(StrEnum):
    """The files of a batch; the value is the last part of the file's id."""

    #: The batch's request lines. Requests travel over Kafka, so no store holds this file yet;
    #: its id still names the batch's input in batch objects, as OpenAI's clients expect one.
    INPUT = "input"
    OUTPUT = "output"
    ERROR = "error"
    #: The final batch object; its presence marks the batch as written.
    BATCH = "batch"

    @property
    def file_name(self) -> str:
        return _FILE_NAMES[self]


_FILE_NAMES = {
    BatchFile.INPUT: "input.jsonl",
    BatchFile.OUTPUT: "output.jsonl",
    BatchFile.ERROR: "error.jsonl",
    BatchFile.BATCH: "batch.json",
}
OUTPUT_FILE = BatchFile.OUTPUT.file_name
ERROR_FILE = BatchFile.ERROR.file_name
BATCH_FILE = BatchFile.BATCH.file_name


def file_id(batch_id: str, kind: BatchFile) -> str:
    """The id of one file of a batch, e.g. ``file-b1-output``; ValueError for an unsafe id."""
    if not is_safe_batch_id(batch_id):
        raise ValueError(f"unsafe batch id {batch_id!r}")
    return f"{_FILE_ID_PREFIX}{batch_id}-{kind.value}"


def parse_file_id(value: str) -> tuple[str, BatchFile]:
    """The batch id and file kind a file id names; ValueError if it names none (batch ids may
    hold ``-``, kinds do not, so the kind is what follows the last one)."""
    batch_id, _, kind = value.removeprefix(_FILE_ID_PREFIX).rpartition("-")
    if not value.startswith(_FILE_ID_PREFIX) or not is_safe_batch_id(batch_id):
        raise ValueError(f"not a batch file id: {value!r}")
    try:
        return batch_id, BatchFile(kind)
    except ValueError:
        raise ValueError(f"not a batch file id: {value!r}") from None


class FileStore(Protocol):
    """Batch files by id. Methods block (disk or network): call them from a worker thread."""

    def write(self, batch_id: str, kind: BatchFile, lines: Iterable[bytes]) -> str:
        """Store the file whole or not at all (replacing any earlier one); return its id."""
        ...

    def read(self, file_id: str) -> Iterator[bytes]:
        """Stream the file's lines, each with its ``\\n``; a missing file raises
        FileNotFoundError, an id that names no batch file ValueError (both once iterated)."""
        ...

    def is_written(self, batch_id: str) -> bool:
        """True once the batch's batch object (its last file) is stored."""
        ...

    def delete(self, batch_id: str) -> None:
        """Remove every file of the batch, the marker first (idempotent)."""
        ...


class LocalFileStore:
    """A ``FileStore`` in a directory, which several aggregators may share (atomic writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def batch_dir(self, batch_id: str) -> Path:
        if not is_safe_batch_id(batch_id):
            raise ValueError(f"unsafe batch id {batch_id!r}")
        return self.root / batch_id

    def path_of(self, file_id: str) -> Path:
        """Where a file id's content lies on this host (for local tools and tests)."""
        batch_id, kind = parse_file_id(file_id)
        return self.batch_dir(batch_id) / kind.file_name

    def write(self, batch_id: str, kind: BatchFile, lines: Iterable[bytes]) -> str:
        write_atomically(self.batch_dir(batch_id) / kind.file_name, lines)
        return file_id(batch_id, kind)

    def read(self, file_id: str) -> Iterator[bytes]:
        with self.path_of(file_id).open("rb") as file:
            yield from file

    def is_written(self, batch_id: str) -> bool:
        return (self.batch_dir(batch_id) / BATCH_FILE).exists()

    def delete(self, batch_id: str) -> None:
        directory = self.batch_dir(batch_id)
        # The marker first: a crash part way leaves a batch that reads as unwritten, never a
        # written one with files missing.
        (directory / BATCH_FILE).unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            fsync_directory(self.root)
