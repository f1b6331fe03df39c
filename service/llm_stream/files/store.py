"""Where a batch's files live, addressed by file id rather than by a path on one host.

A batch object names its output and error files by id (``file-<batch_id>-output``, like
OpenAI's ``file-...`` ids), so that a reader on any host asks a store for the content instead of
opening a path that only exists where the aggregator ran. ``LocalFileStore`` keeps the layout
users and tests rely on: ``<root>/<batch_id>/output.jsonl``, ``error.jsonl`` and ``batch.json``,
the last written only once the others are complete (the marker that the batch is written).

Uploaded files (the gateway's ``files.create``) are stored by id too, each with its record
(``files.records.StoredFile``) beside it, so that gateway replicas sharing a store share the
files' metadata: ``<root>/_uploads/<file_id>`` and ``<file_id>.json`` (``_uploads`` cannot be a
batch id, which starts with a letter or digit). A batch created from an upload records which
one in ``<root>/<batch_id>/input_file.json``, removed with the batch. ``S3FileStore``
(``files.s3``) keeps the same layout as keys in a bucket; ``files.opening.open_store`` picks
one by settings.

Every listed file has an entry in the files' index (``files.index``, ``<root>/_index``), which
``GET /v1/files`` pages through without reading every record (and ``files.expiry`` beside it).
Temporaries are written in ``<root>/_staging``, where those a crashed writer left are found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import orjson

from llm_stream.contracts import is_safe_batch_id, stored_project
from llm_stream.files.atomic import fsync_directory, remove_stale, write_atomically
from llm_stream.files.index import INDEX_DIR, FileIndex, LocalIndexTree
from llm_stream.files.markers import named_expires_after, named_files, named_project
from llm_stream.files.records import StoredFile, is_upload_id

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
UPLOADS_DIR = "_uploads"
STAGING_DIR = "_staging"
INPUT_LINK_FILE = "input_file.json"
#: Content is streamed in pieces of this size: a single line may be as large as a whole file.
CHUNK_BYTES = 1024 * 1024
#: The batch files that are files of the Files API (``batch_output``); the others are internal.
PUBLISHED_KINDS = (BatchFile.OUTPUT, BatchFile.ERROR)


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


def batch_file_record(
    file_id: str,
    size: int,
    modified: float,
    project: str | None = None,
    expires_after_s: int | None = None,
) -> StoredFile:
    """The record of a batch's output or error file, from the stored file's size and time and
    what its batch object says: its project, and how long after writing its files expire."""
    batch_id, kind = parse_file_id(file_id)
    created_at = int(modified)
    return StoredFile(
        id=file_id,
        bytes=size,
        created_at=created_at,
        filename=f"{batch_id}_{kind.value}.jsonl",
        purpose="batch_output",
        project=stored_project(project),
        expires_at=None if expires_after_s is None else created_at + expires_after_s,
    )


class FileStore(Protocol):
    """Batch files by id. Methods block (disk or network): call them from a worker thread."""

    #: The listed files, in the order they are listed (kept by the methods below).
    index: FileIndex

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

    def write_upload(
        self,
        file_id: str,
        chunks: Iterable[bytes],
        *,
        filename: str,
        created_at: int,
        project: str | None = None,
        expires_at: int | None = None,
    ) -> StoredFile:
        """Store an uploaded batch input file of ``project`` (None: the default project)
        whole or not at all, then its record (which marks it complete); return the record,
        its size counted while writing. ``expires_at``: when it expires (None: never)."""
        ...

    def file_record(self, file_id: str) -> StoredFile | None:
        """The record of an upload, or of a batch's stored output or error file (its project
        read from the batch's stored batch object); None if the id names no such file."""
        ...

    def scan_file_records(self) -> Iterator[StoredFile]:
        """Every upload, and every output and error file a written batch names, found by
        reading the whole store: only to index files stored before the index existed."""
        ...

    def tidy(self, older_than_s: float) -> int:
        """Remove what writers that stopped part way left (temporaries, unfinished uploads)
        older than ``older_than_s`` seconds; return how many."""
        ...

    def read_chunks(self, file_id: str) -> Iterator[bytes]:
        """Stream any file's content in pieces of at most ``CHUNK_BYTES``; FileNotFoundError
        (once iterated) when it is not stored."""
        ...

    def local_copy(self, file_id: str) -> AbstractContextManager[Path]:
        """A path on this host that holds the file's content for the block (the stored file
        itself on a local store; object storage would download it)."""
        ...

    def delete_file(self, file_id: str) -> bool:
        """Remove an upload (its record first) or one output or error file; False if none."""
        ...

    def link_input(self, batch_id: str, file_id: str) -> None:
        """Record that the batch was created from the upload ``file_id``."""
        ...

    def linked_input(self, batch_id: str) -> str | None:
        """The upload the batch was created from; None if it was not created from one."""
        ...


class LocalFileStore:
    """A ``FileStore`` in a directory, which several aggregators may share (atomic writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / STAGING_DIR
        self.index = FileIndex(LocalIndexTree(root / INDEX_DIR, self.staging), batch_file_record)

    def batch_dir(self, batch_id: str) -> Path:
        if not is_safe_batch_id(batch_id):
            raise ValueError(f"unsafe batch id {batch_id!r}")
        return self.root / batch_id

    def path_of(self, file_id: str) -> Path:
        """Where a file id's content lies on this host (for local tools and tests)."""
        batch_id, kind = parse_file_id(file_id)
        return self.batch_dir(batch_id) / kind.file_name

    def write(self, batch_id: str, kind: BatchFile, lines: Iterable[bytes]) -> str:
        content = index_around_write(self, batch_id, kind, lines)
        write_atomically(self.batch_dir(batch_id) / kind.file_name, content, staging=self.staging)
        return file_id(batch_id, kind)

    def read(self, file_id: str) -> Iterator[bytes]:
        with self.path_of(file_id).open("rb") as file:
            yield from file

    def is_written(self, batch_id: str) -> bool:
        # A plain string path: pathlib interns every part it parses, and a process asked about
        # every batch of a long history would keep a table of them all.
        if not is_safe_batch_id(batch_id):
            raise ValueError(f"unsafe batch id {batch_id!r}")
        return os.path.exists(os.path.join(self.root, batch_id, BATCH_FILE))

    def delete(self, batch_id: str) -> None:
        directory = self.batch_dir(batch_id)
        unindex_batch(self, batch_id)
        # The marker first: a crash part way leaves a batch that reads as unwritten, never a
        # written one with files missing.
        (directory / BATCH_FILE).unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            fsync_directory(self.root)

    def _upload_path(self, file_id: str) -> Path:
        if not is_upload_id(file_id):
            raise ValueError(f"not an upload id: {file_id!r}")
        return self.root / UPLOADS_DIR / file_id

    def _record_path(self, file_id: str) -> Path:
        return self._upload_path(file_id).with_name(f"{file_id}.json")

    def _content_path(self, file_id: str) -> Path:
        return self._upload_path(file_id) if is_upload_id(file_id) else self.path_of(file_id)

    def write_upload(
        self,
        file_id: str,
        chunks: Iterable[bytes],
        *,
        filename: str,
        created_at: int,
        project: str | None = None,
        expires_at: int | None = None,
    ) -> StoredFile:
        size = write_atomically(self._upload_path(file_id), chunks, staging=self.staging)
        record = StoredFile(
            id=file_id,
            bytes=size,
            created_at=created_at,
            filename=filename,
            purpose="batch",
            project=stored_project(project),
            expires_at=expires_at,
        )
        content = [record.model_dump_json().encode()]
        write_atomically(self._record_path(file_id), content, staging=self.staging)
        self.index.add(record)
        return record

    def file_record(self, file_id: str) -> StoredFile | None:
        if is_upload_id(file_id):
            try:
                return StoredFile.model_validate_json(self._record_path(file_id).read_bytes())
            except FileNotFoundError:
                return None
        try:
            batch_id, kind = parse_file_id(file_id)
        except ValueError:
            return None
        if kind not in PUBLISHED_KINDS:
            return None
        try:
            stat = (self.batch_dir(batch_id) / kind.file_name).stat()
        except FileNotFoundError:
            return None
        try:
            marker: bytes | None = (self.batch_dir(batch_id) / BATCH_FILE).read_bytes()
        except FileNotFoundError:
            marker = None
        return batch_file_record(
            file_id, stat.st_size, stat.st_mtime, named_project(marker), named_expires_after(marker)
        )

    def scan_file_records(self) -> Iterator[StoredFile]:
        uploads = self.root / UPLOADS_DIR
        for path in sorted(uploads.glob("file-*.json")) if uploads.is_dir() else ():
            record = self.file_record(path.name.removesuffix(".json"))
            if record is not None:  # deleted since the directory was listed
                yield record
        for directory in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            if not is_safe_batch_id(directory.name):
                continue
            try:
                marker = (directory / BATCH_FILE).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                continue  # not written yet (or not a batch)
            for named in named_files(marker):
                if (record := self.file_record(named)) is not None:
                    yield record

    def read_chunks(self, file_id: str) -> Iterator[bytes]:
        with self._content_path(file_id).open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    @contextlib.contextmanager
    def local_copy(self, file_id: str) -> Iterator[Path]:
        yield self._content_path(file_id)

    def tidy(self, older_than_s: float) -> int:
        return remove_stale(self.staging, older_than_s)

    def delete_file(self, file_id: str) -> bool:
        record = self.file_record(file_id)
        if record is None:
            return False
        self.index.remove(record)  # first: no entry names missing content
        if is_upload_id(file_id):
            try:
                self._record_path(file_id).unlink()  # next: no record names missing content
            except FileNotFoundError:
                return False
            self._upload_path(file_id).unlink(missing_ok=True)
            fsync_directory(self.root / UPLOADS_DIR)
            return True
        path = self.path_of(file_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_directory(path.parent)
        return True

    def link_input(self, batch_id: str, file_id: str) -> None:
        link = orjson.dumps({"input_file_id": file_id})
        write_atomically(self.batch_dir(batch_id) / INPUT_LINK_FILE, [link], staging=self.staging)

    def linked_input(self, batch_id: str) -> str | None:
        try:
            link = orjson.loads((self.batch_dir(batch_id) / INPUT_LINK_FILE).read_bytes())
        except (FileNotFoundError, ValueError):  # ValueError: an unsafe id, a bad link
            return None
        value = link.get("input_file_id") if isinstance(link, dict) else None
        return value if isinstance(value, str) else None


def index_around_write(
    store: FileStore, batch_id: str, kind: BatchFile, lines: Iterable[bytes]
) -> Iterable[bytes]:
    """Keep the index right as a batch file is written; return the lines to write. An entry
    holds its file's time, so a published file written again (a batch retried after a crash)
    loses its entry first; the files a batch object names are indexed just before it is
    written, once complete, so a written batch's files are always listed."""
    if kind in PUBLISHED_KINDS:
        if (earlier := store.file_record(file_id(batch_id, kind))) is not None:
            store.index.remove_from_every_project(earlier)
        return lines
    if kind is not BatchFile.BATCH:
        return lines
    marker = b"".join(lines)  # a batch object: small
    index_files(store, named_files(marker), named_project(marker), named_expires_after(marker))
    return [marker]


def index_files(
    store: FileStore,
    file_ids: Iterable[str],
    project: str | None = None,
    expires_after_s: int | None = None,
) -> None:
    """Index stored files of ``project``, expiring ``expires_after_s`` after they were written
    (None: never); an entry already there is written again, the same."""
    for named in file_ids:
        if (record := store.file_record(named)) is not None:
            expires_at = None if expires_after_s is None else record.created_at + expires_after_s
            update = {"project": stored_project(project), "expires_at": expires_at}
            store.index.add(record.model_copy(update=update))


def unindex_batch(store: FileStore, batch_id: str) -> None:
    """Remove the entries of a batch's files, before the files themselves."""
    for kind in PUBLISHED_KINDS:
        if (record := store.file_record(file_id(batch_id, kind))) is not None:
            store.index.remove(record)
