"""A batch's results on local disk, one row per ``custom_id``: de-duplication without RAM.

The aggregator must hold every result of a batch until the last one arrives, whatever the batch
size, and drop redelivered duplicates. SQLite gives both (a primary key on ``custom_id``) with
memory that stays flat. The spool is a cache: it can always be rebuilt from the results topic,
so it is written without fsync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path


class BatchSpool:
    """Results of one batch, first delivery of each ``custom_id`` wins."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Writing the batch files reads the spool from a worker thread; callers serialise access.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results ("
            " custom_id TEXT PRIMARY KEY, succeeded INTEGER NOT NULL, line BLOB NOT NULL)"
        )
        counts = dict(
            self._db.execute("SELECT succeeded, COUNT(*) FROM results GROUP BY succeeded")
        )
        self.completed: int = counts.get(1, 0)
        self.failed: int = counts.get(0, 0)

    @property
    def total(self) -> int:
        return self.completed + self.failed

    def add(self, results: Iterable[tuple[str, bool, bytes]]) -> int:
        """Store ``(custom_id, succeeded, line)`` rows; return how many were new."""
        added_ok = added_failed = 0
        self._db.execute("BEGIN")
        try:
            for custom_id, succeeded, line in results:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO results VALUES (?, ?, ?)",
                    (custom_id, int(succeeded), line),
                )
                if cursor.rowcount:
                    if succeeded:
                        added_ok += 1
                    else:
                        added_failed += 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.completed += added_ok
        self.failed += added_failed
        return added_ok + added_failed

    def get(self, custom_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT line FROM results WHERE custom_id = ?", (custom_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def lines(self, *, succeeded: bool) -> Iterator[bytes]:
        """Stored lines in arrival order, streamed from disk."""
        cursor = self._db.execute(
            "SELECT line FROM results WHERE succeeded = ? ORDER BY rowid", (int(succeeded),)
        )
        for (line,) in cursor:
            yield bytes(line)

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
