"""A followed topic's index in SQLite on disk: what a process follows whole without holding
it in the heap (``client.status_index``, ``curation.judgement_index``).

Records are written in the index's own thread, on a connection only it uses, so the event
loop never waits on a write; reads run on the event loop on a second connection and, in WAL
mode, see the last committed state. The file is a cache of the topic, rebuilt on every start:
written without fsync, deleted on close, and a dead process's file is swept by the next one
(``ops.private_dir``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

from llm_stream.ops.private_dir import PrivateDirectory

#: The page cache of each connection (KiB): lookups touch a few pages; the rest stays on disk.
_CACHE_KIB = 1024

RecordT = TypeVar("RecordT")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    return db


class SqliteIndex(ABC, Generic[RecordT]):
    """The file, its two connections and its writer thread; a subclass says how records are
    stored (``_store``, inside one transaction) and reads on ``_reader``."""

    def __init__(self, root: Path, file_name: str, schema: str) -> None:
        self._directory = PrivateDirectory(root)
        writer: sqlite3.Connection | None = None
        try:
            path = self._directory.path / file_name
            writer = _connect(path)
            writer.executescript(schema)
            self._reader = _connect(path)
        except BaseException:
            if writer is not None:
                writer.close()
            self._directory.close()
            raise
        self._writer = writer
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=Path(file_name).stem)

    async def apply(self, records: Sequence[RecordT]) -> None:
        """Store ``records`` in order, in one transaction, in the index's thread."""
        if records:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._write, records)

    def close(self) -> None:
        """Wait for a write under way, then delete the file."""
        self._thread.shutdown(wait=True)
        self._reader.close()
        self._writer.close()
        self._directory.close()

    @abstractmethod
    def _store(self, db: sqlite3.Connection, records: Sequence[RecordT]) -> None:
        """Write ``records`` on ``db``, the writer's connection, inside its transaction."""

    def _write(self, records: Sequence[RecordT]) -> None:
        db = self._writer
        db.execute("BEGIN")
        try:
            self._store(db, records)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
