"""A submitted batch's lines, kept in the file store as its input file, so that
``llm-stream resume`` can publish again the lines a broker lost (``client.resume``).

The gateway keeps the upload a batch is created from, and ``llm-stream submit`` the file it
was given; a batch submitted through the library has no file, so its lines are copied as they
are published (spooled to disk past a few MiB: memory stays bounded however large the batch)
and stored, linked to the batch, once the broker holds them all. Keeping is best effort: a
store that refuses is logged, and resume then refuses that batch with a clear error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import orjson

from llm_stream.files.records import new_upload_id
from llm_stream.files.store import FileStore

logger = logging.getLogger(__name__)

#: Lines held in memory before the copy spills to a temporary file.
_IN_MEMORY_BYTES = 4 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024


class InputKeeping:
    """Where and how long a client keeps the inputs of the batches it submits."""

    def __init__(self, open_store: Callable[[], FileStore], expires_after_s: int | None) -> None:
        self._open_store = open_store
        self._store: FileStore | None = None
        self.expires_after_s = expires_after_s

    def store(self) -> FileStore:
        """The store, opened on first use (a client that never submits opens none)."""
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def copy(self, batch_id: str, project: str | None) -> KeptInput:
        return KeptInput(self, batch_id, project)


class KeptInput:
    """One batch's lines as published; ``keep`` stores them once all are published."""

    def __init__(self, keeping: InputKeeping, batch_id: str, project: str | None) -> None:
        self._keeping, self.batch_id, self._project = keeping, batch_id, project
        # Closed by keep() or discard(): the copy lives across the batch's publishing.
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115

    def add(self, line: Mapping[str, Any]) -> None:
        self._spool.write(orjson.dumps(line) + b"\n")

    async def keep(self) -> bool:
        """Store the lines as the batch's input file; False (logged) where the store refused."""
        try:
            await asyncio.to_thread(self._store_lines)
            return True
        except Exception as error:
            logger.warning(
                "batch %s: its input was not kept in the file store (%r): resume is refused",
                self.batch_id,
                error,
            )
            return False
        finally:
            self.discard()

    def discard(self) -> None:
        self._spool.close()

    def _store_lines(self) -> None:
        store = self._keeping.store()
        self._spool.seek(0)
        created_at = int(time.time())
        keep_s = self._keeping.expires_after_s
        upload = store.write_upload(
            new_upload_id(),
            iter(functools.partial(self._spool.read, _CHUNK_BYTES), b""),
            filename=f"{self.batch_id}.jsonl",
            created_at=created_at,
            project=self._project,
            expires_at=created_at + keep_s if keep_s else None,
        )
        store.link_input(self.batch_id, upload.id)
