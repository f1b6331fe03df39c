"""Results on local disk, one row per ``(batch_id, custom_id)``: de-duplication without RAM.

The aggregator must hold every result of a batch until the last one arrives, whatever the batch
size, and drop redelivered duplicates. SQLite gives both (a unique key) with memory that stays
flat. The spool is a cache: it is rebuilt from the results topic after a restart, so it is
written without fsync and a crash may leave it corrupt: nobody reads it again.

Why one database for all of a process's open batches: a database per batch costs descriptors
per open batch (about 300 open batches exhaust the default limit of 1024). One database holds
any number of them with three descriptors; the per-batch counts live in memory and a batch's
rows are deleted once it is written or released.

Why a private directory per process: two aggregators may share an output directory, even a
partition during a bad rebalance, and must not share a spool. Each process spools in
``<root>/<uuid>/``, holds ``fcntl.flock`` on a lock file in it while alive, and deletes it on
close; a process starting next to it deletes the directories of dead processes (their lock is
free).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

SPOOL_FILE = "results.sqlite"
LOCK_FILE = "owner.lock"
_INSERT = "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?)"
#: A directory without a lock file is being created; after this long its creator is gone.
_UNLOCKED_GRACE_S = 600.0


class ResultSpool:
    """Results of many batches in one database; first delivery of a ``custom_id`` wins."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Writing the batch files reads the spool from a worker thread; callers serialise access.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        # Rows are written once and read once, in order: a page cache (2 MiB by default)
        # would only hold memory that grows with a batch up to its size.
        self._db.execute("PRAGMA cache_size=-256")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (batch_id TEXT NOT NULL, custom_id TEXT NOT NULL,"
            " succeeded INTEGER NOT NULL, line BLOB NOT NULL, UNIQUE (batch_id, custom_id))"
        )
        # Rowid is the index's last column: a batch's lines stream in arrival order, unsorted.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS results_by_batch ON results (batch_id, succeeded)"
        )
        self._counts: dict[str, list[int]] = {}  # batch_id -> [completed, failed]
        query = "SELECT batch_id, succeeded, COUNT(*) FROM results GROUP BY batch_id, succeeded"
        for batch_id, succeeded, count in self._db.execute(query):
            self._counts.setdefault(batch_id, [0, 0])[0 if succeeded else 1] = count

    def completed(self, batch_id: str) -> int:
        return self._counts.get(batch_id, (0, 0))[0]

    def failed(self, batch_id: str) -> int:
        return self._counts.get(batch_id, (0, 0))[1]

    def total(self, batch_id: str) -> int:
        return sum(self._counts.get(batch_id, (0, 0)))

    def add(self, batch_id: str, results: Iterable[tuple[str, bool, bytes]]) -> int:
        """Store ``(custom_id, succeeded, line)`` rows of a batch; return how many were new."""
        return len(self.insert(batch_id, results))

    def insert(self, batch_id: str, results: Iterable[tuple[str, bool, bytes]]) -> list[int]:
        """Store ``(custom_id, succeeded, line)`` rows of a batch; return the positions (in
        ``results``) of those that were new, so that what they carry is counted once.

        All rows go in one ``executemany``; only when some were already stored (a
        redelivery: rare) is the transaction redone row by row to learn which."""
        rows = [
            (batch_id, custom_id, int(succeeded), line) for custom_id, succeeded, line in results
        ]
        self._db.execute("BEGIN")
        try:
            before = self._db.total_changes
            self._db.executemany(_INSERT, rows)
            if self._db.total_changes - before == len(rows):
                new = list(range(len(rows)))
            else:
                self._db.execute("ROLLBACK")
                self._db.execute("BEGIN")
                new = [
                    position
                    for position, row in enumerate(rows)
                    if self._db.execute(_INSERT, row).rowcount
                ]
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        counts = self._counts.setdefault(batch_id, [0, 0])
        for position in new:
            counts[0 if rows[position][2] else 1] += 1
        return new

    def get(self, batch_id: str, custom_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT line FROM results WHERE batch_id = ? AND custom_id = ?", (batch_id, custom_id)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def lines(self, batch_id: str, *, succeeded: bool) -> Iterator[bytes]:
        """A batch's stored lines in arrival order, streamed from disk."""
        cursor = self._db.execute(
            "SELECT line FROM results WHERE batch_id = ? AND succeeded = ? ORDER BY rowid",
            (batch_id, int(succeeded)),
        )
        try:
            for (line,) in cursor:
                yield bytes(line)
        finally:
            cursor.close()

    def drop(self, batch_id: str) -> None:
        """Forget a batch: its rows and its counts."""
        self._db.execute("DELETE FROM results WHERE batch_id = ?", (batch_id,))
        self._counts.pop(batch_id, None)

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class BatchSpool:
    """Results of one batch in a database of its own (run-batch's index of an output file)."""

    _BATCH = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._spool = ResultSpool(path)

    @property
    def completed(self) -> int:
        return self._spool.completed(self._BATCH)

    @property
    def failed(self) -> int:
        return self._spool.failed(self._BATCH)

    @property
    def total(self) -> int:
        return self._spool.total(self._BATCH)

    def add(self, results: Iterable[tuple[str, bool, bytes]]) -> int:
        """Store ``(custom_id, succeeded, line)`` rows; return how many were new."""
        return self._spool.add(self._BATCH, results)

    def get(self, custom_id: str) -> bytes | None:
        return self._spool.get(self._BATCH, custom_id)

    def lines(self, *, succeeded: bool) -> Iterator[bytes]:
        return self._spool.lines(self._BATCH, succeeded=succeeded)

    def close(self) -> None:
        self._spool.close()

    def delete(self) -> None:
        self._spool.delete()


def default_spool_root() -> Path:
    """Under the system temp dir, one per user (a shared name would be another user's)."""
    return Path(tempfile.gettempdir()) / f"llm-stream-spool-{os.getuid()}"


def sweep_stale(root: Path) -> list[Path]:
    """Delete the spool directories under ``root`` whose owner is dead; return them."""
    swept: list[Path] = []
    try:
        children = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return swept
    for child in children:
        if not child.is_dir() or child.is_symlink():
            continue
        try:
            descriptor = os.open(child / LOCK_FILE, os.O_RDWR)
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - child.stat().st_mtime > _UNLOCKED_GRACE_S:
                    shutil.rmtree(child, ignore_errors=True)
                    swept.append(child)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        else:
            shutil.rmtree(child, ignore_errors=True)
            swept.append(child)
        finally:
            os.close(descriptor)
    if swept:
        logger.info("swept %d spool directories of dead processes under %s", len(swept), root)
    return swept


class PrivateDirectory:
    """A directory only this process uses while it lives, deleted on close."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = default_spool_root() if root is None else root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        sweep_stale(self.root)
        self.path = self.root / uuid.uuid4().hex
        self.path.mkdir(mode=0o700)
        self._lock: int | None = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Delete the directory, then let go of its lock (idempotent)."""
        if self._lock is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = None


class PrivateSpool(ResultSpool):
    """A ``ResultSpool`` in a ``PrivateDirectory`` under ``root``: close deletes both."""

    def __init__(self, root: Path | None = None) -> None:
        self.directory = PrivateDirectory(root)
        try:
            super().__init__(self.directory.path / SPOOL_FILE)
        except BaseException:
            self.directory.close()
            raise

    def close(self) -> None:
        super().close()
        self.directory.close()
