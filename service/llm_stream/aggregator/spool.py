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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SPOOL_FILE = "results.sqlite"
LOCK_FILE = "owner.lock"
_SEE = "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)"
#: A directory without a lock file is being created; after this long its creator is gone.
_UNLOCKED_GRACE_S = 600.0

Row = tuple[str, bool, bytes]
"""``(custom_id, succeeded, line)``: one result as the spool takes it."""


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Writing the batch files reads the spool from a worker thread; callers serialise access.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    # Rows are written once and read once, in order: a page cache (2 MiB by default)
    # would only hold memory that grows with a batch up to its size.
    db.execute("PRAGMA cache_size=-256")
    return db


class ResultSpool:
    """Results of many batches in one database; first delivery of a ``custom_id`` wins.

    Why two tables: de-duplication needs a key per result (``seen``), but the files need only
    the lines, in arrival order. Each poll's new lines of a batch go in as one chunk per file
    (``chunks``), so a line costs one small key row, and writing a batch's file streams a
    chunk per poll instead of a row per line: a third of the aggregator's time per line was
    SQLite's, storing and reading lines one by one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _open(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (batch_id TEXT NOT NULL, custom_id TEXT NOT NULL,"
            " succeeded INTEGER NOT NULL, PRIMARY KEY (batch_id, custom_id)) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (batch_id TEXT NOT NULL,"
            " succeeded INTEGER NOT NULL, lines BLOB NOT NULL)"
        )
        # Rowid is the index's last column: a batch's chunks stream in arrival order.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS chunks_by_batch ON chunks (batch_id, succeeded)"
        )
        self._counts: dict[str, list[int]] = {}  # batch_id -> [completed, failed]
        query = "SELECT batch_id, succeeded, COUNT(*) FROM seen GROUP BY batch_id, succeeded"
        for batch_id, succeeded, count in self._db.execute(query):
            self._counts.setdefault(batch_id, [0, 0])[0 if succeeded else 1] = count

    def completed(self, batch_id: str) -> int:
        return self._counts.get(batch_id, (0, 0))[0]

    def failed(self, batch_id: str) -> int:
        return self._counts.get(batch_id, (0, 0))[1]

    def total(self, batch_id: str) -> int:
        return sum(self._counts.get(batch_id, (0, 0)))

    def add(self, batch_id: str, results: Iterable[Row]) -> int:
        """Store ``(custom_id, succeeded, line)`` rows of a batch; return how many were new."""
        return len(self.insert(batch_id, list(results)))

    def insert(self, batch_id: str, results: Sequence[Row]) -> list[int]:
        """Store ``(custom_id, succeeded, line)`` rows of a batch; return the positions (in
        ``results``) of those that were new, so that what they carry is counted once.

        All keys go in one ``executemany``; only when some were already stored (a
        redelivery: rare) is the transaction redone row by row to learn which."""
        keys = [(batch_id, custom_id, int(succeeded)) for custom_id, succeeded, _ in results]
        self._db.execute("BEGIN")
        try:
            before = self._db.total_changes
            self._db.executemany(_SEE, keys)
            if self._db.total_changes - before == len(keys):
                new = list(range(len(keys)))
            else:
                self._db.execute("ROLLBACK")
                self._db.execute("BEGIN")
                new = [p for p, key in enumerate(keys) if self._db.execute(_SEE, key).rowcount]
            completed = b"".join(results[p][2] for p in new if results[p][1])
            failed = b"".join(results[p][2] for p in new if not results[p][1])
            self._db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?)",
                [
                    (batch_id, succeeded, lines)
                    for succeeded, lines in ((1, completed), (0, failed))
                    if lines
                ],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        counts = self._counts.setdefault(batch_id, [0, 0])
        for position in new:
            counts[0 if results[position][1] else 1] += 1
        return new

    def lines(self, batch_id: str, *, succeeded: bool) -> Iterator[bytes]:
        """A batch's stored lines in arrival order, streamed from disk a poll's worth at a
        time (each piece holds whole lines, joined as they were given)."""
        cursor = self._db.execute(
            "SELECT lines FROM chunks WHERE batch_id = ? AND succeeded = ? ORDER BY rowid",
            (batch_id, int(succeeded)),
        )
        try:
            for (lines,) in cursor:
                yield bytes(lines)
        finally:
            cursor.close()

    def drop(self, batch_id: str) -> None:
        """Forget a batch: its rows and its counts."""
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM seen WHERE batch_id = ?", (batch_id,))
        self._db.execute("DELETE FROM chunks WHERE batch_id = ?", (batch_id,))
        self._db.execute("COMMIT")
        self._counts.pop(batch_id, None)

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        self.close()
        _delete_database(self.path)


def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class OutputIndex:
    """An output file's lines by ``custom_id`` on disk (run-batch's merge into input order);
    first line of a ``custom_id`` wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _open(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS lines (custom_id TEXT PRIMARY KEY, line BLOB NOT NULL)"
        )

    def add(self, lines: Iterable[tuple[str, bytes]]) -> int:
        """Index ``(custom_id, line)`` pairs; return how many were new."""
        before = self._db.total_changes
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO lines VALUES (?, ?)", lines)
        self._db.execute("COMMIT")
        return self._db.total_changes - before

    def get(self, custom_id: str) -> bytes | None:
        row = self._db.execute("SELECT line FROM lines WHERE custom_id = ?", (custom_id,))
        found = row.fetchone()
        return None if found is None else bytes(found[0])

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        self.close()
        _delete_database(self.path)


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
