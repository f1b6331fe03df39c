"""A ``FileStore`` in S3-compatible object storage, so aggregators and gateways on any host
share batch files without a shared volume.

Keys keep ``LocalFileStore``'s layout under the URL's prefix: ``<prefix>/<batch_id>/output.jsonl``,
``error.jsonl``, ``batch.json``, ``input_file.json``, and ``<prefix>/_uploads/<file_id>`` with
``<file_id>.json``. Every key is built from a checked batch id or upload id, so no id can name a
key outside the prefix. An object is replaced whole by a PUT (or a completed multipart upload),
so a reader sees the old file or the new one, never part of one; as on disk, a record or marker
is written after what it describes and deleted before it. The files' index (``files.index``)
is keys under ``<prefix>/_index/``, each listing of it one bucket's keys (``Delimiter``).

Content goes through boto3's managed transfer without threads: one part (``PART_BYTES``) is read
from the iterable and sent before the next is read, in the caller's thread, so a 200 MiB upload
holds one part in memory, and a failure aborts the multipart upload, leaving no object.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import orjson
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from llm_stream.contracts import is_safe_batch_id, stored_project
from llm_stream.files.index import INDEX_DIR, FileIndex
from llm_stream.files.markers import named_expires_after, named_files, named_project
from llm_stream.files.records import StoredFile, is_upload_id
from llm_stream.files.store import (
    BATCH_FILE,
    CHUNK_BYTES,
    INPUT_LINK_FILE,
    PUBLISHED_KINDS,
    UPLOADS_DIR,
    BatchFile,
    batch_file_record,
    file_id,
    index_around_write,
    parse_file_id,
    unindex_batch,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Size of an upload's parts (S3's minimum is 5 MiB): what one upload holds in memory.
PART_BYTES = 8 * 1024 * 1024
#: Error codes of a missing object: GET says NoSuchKey, HEAD (no body) only its status.
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _MISSING


class S3FileStore:
    """A ``FileStore`` in a bucket under a prefix, which several processes may share."""

    def __init__(
        self, client: Any, bucket: str, prefix: str = "", *, part_bytes: int = PART_BYTES
    ) -> None:
        """``client``: a boto3 S3 client (thread-safe: one per store, used by every thread)."""
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._transfer = TransferConfig(
            multipart_threshold=part_bytes,
            multipart_chunksize=part_bytes,
            use_threads=False,
            preferred_transfer_client="classic",
        )
        self.index = FileIndex(_S3IndexTree(self, f"{self.prefix}{INDEX_DIR}/"), batch_file_record)

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> S3FileStore:
        """The store at ``s3://bucket/prefix``; credentials and region from the AWS provider
        chain (environment, config files, instance roles). Another server than AWS's is
        addressed path-style (``endpoint/bucket/key``), which S3-compatible servers answer."""
        parsed = urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        config = Config(
            retries={"mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, parsed.netloc, parsed.path)

    # Keys: every one is built from a checked id, under the prefix.

    def _batch_key(self, batch_id: str, name: str) -> str:
        if not is_safe_batch_id(batch_id):
            raise ValueError(f"unsafe batch id {batch_id!r}")
        return f"{self.prefix}{batch_id}/{name}"

    def _upload_key(self, file_id: str) -> str:
        if not is_upload_id(file_id):
            raise ValueError(f"not an upload id: {file_id!r}")
        return f"{self.prefix}{UPLOADS_DIR}/{file_id}"

    def _content_key(self, file_id: str) -> str:
        if is_upload_id(file_id):
            return self._upload_key(file_id)
        batch_id, kind = parse_file_id(file_id)
        return self._batch_key(batch_id, kind.file_name)

    # Objects.

    def _put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` as one object, whole or not at all; return its size."""
        source = _ChunkReader(chunks)
        self.client.upload_fileobj(
            io.BufferedReader(source, CHUNK_BYTES), self.bucket, key, Config=self._transfer
        )
        return source.size

    def _put_small(self, key: str, content: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=content)

    def _chunks(self, key: str) -> Iterator[bytes]:
        """The object's content in pieces of at most ``CHUNK_BYTES``; FileNotFoundError if
        it is missing. The connection is released when the iterator is closed early."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as error:
            if _is_missing(error):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from error
            raise
        with contextlib.closing(body):
            yield from body.iter_chunks(CHUNK_BYTES)

    def _get_small(self, key: str) -> bytes | None:
        try:
            return b"".join(self._chunks(key))
        except FileNotFoundError:
            return None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _is_missing(error):
                return None
            raise
        return head

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The objects under ``prefix`` (``Key``, ``Size``, ``LastModified``), in key order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def _names_under(self, prefix: str) -> list[str]:
        """The names one level under ``prefix`` (``.../``): objects' and ``/``-ended groups'."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        names: list[str] = []
        for page in pages:
            names += [group["Prefix"] for group in page.get("CommonPrefixes", [])]
            names += [stored["Key"] for stored in page.get("Contents", [])]
        return [name.removeprefix(prefix).rstrip("/") for name in names]

    # Batch files.

    def write(self, batch_id: str, kind: BatchFile, lines: Iterable[bytes]) -> str:
        self._put(
            self._batch_key(batch_id, kind.file_name),
            index_around_write(self, batch_id, kind, lines),
        )
        return file_id(batch_id, kind)

    def read(self, file_id: str) -> Iterator[bytes]:
        batch_id, kind = parse_file_id(file_id)
        yield from _lines(self._chunks(self._batch_key(batch_id, kind.file_name)))

    def is_written(self, batch_id: str) -> bool:
        return self._head(self._batch_key(batch_id, BATCH_FILE)) is not None

    def delete(self, batch_id: str) -> None:
        directory = self._batch_key(batch_id, "")
        unindex_batch(self, batch_id)
        # The marker first: a failure part way leaves a batch that reads as unwritten.
        self._delete(directory + BATCH_FILE)
        for stored in list(self._list(directory)):
            self._delete(stored["Key"])

    # Uploads and records.

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
        key = self._upload_key(file_id)
        size = self._put(key, chunks)
        record = StoredFile(
            id=file_id,
            bytes=size,
            created_at=created_at,
            filename=filename,
            purpose="batch",
            project=stored_project(project),
            expires_at=expires_at,
        )
        self._put_small(f"{key}.json", record.model_dump_json().encode())
        self.index.add(record)
        return record

    def file_record(self, file_id: str) -> StoredFile | None:
        if is_upload_id(file_id):
            stored = self._get_small(f"{self._upload_key(file_id)}.json")
            return None if stored is None else StoredFile.model_validate_json(stored)
        try:
            batch_id, kind = parse_file_id(file_id)
        except ValueError:
            return None
        if kind not in PUBLISHED_KINDS:
            return None
        head = self._head(self._batch_key(batch_id, kind.file_name))
        if head is None:
            return None
        marker = self._get_small(self._batch_key(batch_id, BATCH_FILE))
        modified = head["LastModified"].timestamp()
        return batch_file_record(
            file_id,
            head["ContentLength"],
            modified,
            named_project(marker),
            named_expires_after(marker),
        )

    def scan_file_records(self) -> Iterator[StoredFile]:
        """One listing of the prefix: uploads' records are read, batch files' sizes and times
        come from the listing, and each written batch's marker is read for the ids it names."""
        objects = {stored["Key"]: stored for stored in self._list(self.prefix)}
        uploads = f"{self.prefix}{UPLOADS_DIR}/"
        for key in objects:
            name = key.removeprefix(self.prefix)
            if key.startswith(uploads) and key.endswith(".json"):
                upload_id = key.removeprefix(uploads).removesuffix(".json")
                record = self.file_record(upload_id) if is_upload_id(upload_id) else None
                if record is not None:  # deleted since the prefix was listed
                    yield record
                continue
            batch_id, _, last = name.partition("/")
            if last != BATCH_FILE or not is_safe_batch_id(batch_id):
                continue
            marker = self._get_small(key)
            project, expires_after_s = named_project(marker), named_expires_after(marker)
            for named in named_files(marker or b""):
                with contextlib.suppress(ValueError):  # names no batch file
                    named_batch, kind = parse_file_id(named)
                    stored = objects.get(self._batch_key(named_batch, kind.file_name))
                    if stored is not None and kind in PUBLISHED_KINDS:
                        modified = stored["LastModified"].timestamp()
                        yield batch_file_record(
                            named, stored["Size"], modified, project, expires_after_s
                        )

    def read_chunks(self, file_id: str) -> Iterator[bytes]:
        yield from self._chunks(self._content_key(file_id))

    @contextlib.contextmanager
    def local_copy(self, file_id: str) -> Iterator[Path]:
        """The content downloaded to a private temporary file, removed after the block."""
        key = self._content_key(file_id)
        with tempfile.TemporaryDirectory(prefix="llm-stream-") as directory:
            path = Path(directory) / "content"
            try:
                self.client.download_file(self.bucket, key, str(path))
            except ClientError as error:
                if _is_missing(error):
                    raise FileNotFoundError(f"s3://{self.bucket}/{key}") from error
                raise
            yield path

    def tidy(self, older_than_s: float) -> int:
        """Abort the multipart uploads under the prefix begun over ``older_than_s`` ago (a
        writer that stopped part way leaves its parts stored, and billed, until then)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        stale = [upload for page in pages for upload in page.get("Uploads", [])]
        stale = [upload for upload in stale if upload["Initiated"] < cutoff]
        for upload in stale:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        return len(stale)

    def delete_file(self, file_id: str) -> bool:
        record = self.file_record(file_id)
        if record is None:  # S3 deletes a missing key without a word
            return False
        self.index.remove(record)  # first: no entry names missing content
        key = self._content_key(file_id)
        if is_upload_id(file_id):
            self._delete(f"{key}.json")  # first: no record names missing content
        self._delete(key)
        return True

    def link_input(self, batch_id: str, file_id: str) -> None:
        link = orjson.dumps({"input_file_id": file_id})
        self._put_small(self._batch_key(batch_id, INPUT_LINK_FILE), link)

    def linked_input(self, batch_id: str) -> str | None:
        try:
            stored = self._get_small(self._batch_key(batch_id, INPUT_LINK_FILE))
            link = orjson.loads(stored) if stored is not None else None
        except ValueError:  # an unsafe id, a bad link
            return None
        value = link.get("input_file_id") if isinstance(link, dict) else None
        return value if isinstance(value, str) else None


class _S3IndexTree:
    """The files' index as keys under ``root`` (``<prefix>/_index/``), one per entry."""

    def __init__(self, store: S3FileStore, root: str) -> None:
        self._store = store
        self._root = root

    def _key(self, path: tuple[str, ...]) -> str:
        return self._root + "/".join(path)

    def children(self, path: tuple[str, ...]) -> list[str]:
        return self._store._names_under(self._key(path) + "/")

    def put(self, path: tuple[str, ...], content: bytes) -> None:
        self._store._put_small(self._key(path), content)

    def remove(self, path: tuple[str, ...]) -> None:
        self._store._delete(self._key(path))

    def read(self, path: tuple[str, ...]) -> bytes | None:
        return self._store._get_small(self._key(path))


class _ChunkReader(io.RawIOBase):
    """An iterable of byte strings as the readable stream boto3 uploads, counting its bytes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk).cast("B")
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self.size += count
        return count


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines, each with its ``\\n`` (the last may lack one), split only at ``\\n`` as files
    are, joined across pieces without copying a long line more than once."""
    head: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            head.append(chunk[start : end + 1])
            yield b"".join(head)
            head.clear()
            start = end + 1
        if start < len(chunk):
            head.append(chunk[start:])
    if head:
        yield b"".join(head)
