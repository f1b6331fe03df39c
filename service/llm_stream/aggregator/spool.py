"""Results on local disk, one key per ``(batch_id, custom_id)``: de-duplication without RAM.

The aggregator must hold every result of a batch until the last one arrives, whatever the batch
size, and drop redelivered duplicates. SQLite gives the keys (unique) and files the lines, with
memory that stays flat. The spool is a cache: it is rebuilt from the results topic after a
restart, so it is written without fsync and a crash may leave it corrupt: nobody reads it
again.

Why one database for all of a process's open batches: a database per batch costs descriptors
per open batch (about 300 open batches exhaust the default limit of 1024). One database holds
any number of them with three descriptors (line files are opened only to append or read); the
per-batch counts live in memory, and a batch's keys and lines are deleted once it is written or
released.

Why a private directory per process: two aggregators may share an output directory, even a
partition during a bad rebalance, and must not share a spool. Each process spools in
``<root>/<uuid>/``, holds ``fcntl.flock`` on a lock file in it while alive, and deletes it on
close; a process starting next to it deletes the directories of dead processes (their lock is
free).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from llm_stream.contracts import is_safe_batch_id
from llm_stream.ops.private_dir import PrivateDirectory

logger = logging.getLogger(__name__)

SPOOL_FILE = "results.sqlite"
#: Bytes read at a time when a batch's lines are streamed out (1 MiB pieces raised the
#: aggregator's peak memory by 2 MB while it wrote a 100,000-line batch).
_READ_BYTES = 1 << 16
_SEE = "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)"

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


def _check_batch_id(batch_id: str) -> str:
    """A batch's lines are files named after it: only a safe batch id (letters, digits, ``_``
    and ``-``) names one, so no id can reach outside the spool."""
    if not is_safe_batch_id(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return batch_id


class ResultSpool:
    """Results of many batches, on disk; first delivery of a ``custom_id`` wins.

    Why keys and lines apart: de-duplication needs a key per result, the files need only the
    lines, in arrival order. Keys go in SQLite; each step's new lines are appended to the
    batch's two line files (output, error) beside the database, so forgetting them is an
    unlink and writing the batch's files streams them back. Lines stored in SQLite cost a
    fifth more per line to insert, and 100,000 of them took 50 ms to delete, on the event
    loop's path. (A key table per batch would drop faster, but creating one in a schema of
    10,000 tables took 0.6 ms: five times the time to open that many batches.)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _open(path)
        self._lines_dir = path.with_name(f"{path.name}.lines")
        self._lines_dir.mkdir(exist_ok=True)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (batch_id TEXT NOT NULL, custom_id TEXT NOT NULL,"
            " succeeded INTEGER NOT NULL, PRIMARY KEY (batch_id, custom_id)) WITHOUT ROWID"
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
        redelivery: rare) is the transaction redone row by row to learn which. The lines are
        appended before the keys commit, and cut off again if that fails: a key is stored
        exactly when its line is."""
        _check_batch_id(batch_id)
        keys = [(batch_id, custom_id, succeeded) for custom_id, succeeded, _ in results]
        self._db.execute("BEGIN")
        appended: list[tuple[Path, int]] = []
        try:
            before = self._db.total_changes
            self._db.executemany(_SEE, keys)
            if self._db.total_changes - before == len(keys):
                new = list(range(len(keys)))
            else:
                self._db.execute("ROLLBACK")
                self._db.execute("BEGIN")
                new = [p for p, key in enumerate(keys) if self._db.execute(_SEE, key).rowcount]
            for succeeded in (True, False):
                lines = b"".join(results[p][2] for p in new if results[p][1] == succeeded)
                if lines:
                    appended.append(self._append(self._lines_path(batch_id, succeeded), lines))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            for path, size in appended:
                os.truncate(path, size)
            raise
        counts = self._counts.setdefault(batch_id, [0, 0])
        for position in new:
            counts[0 if results[position][1] else 1] += 1
        return new

    def lines(self, batch_id: str, *, succeeded: bool) -> Iterator[bytes]:
        """A batch's stored lines in arrival order, streamed from disk 64 KiB at a time (a
        piece may end part way through a line: together they are the file)."""
        try:
            file = self._lines_path(batch_id, succeeded).open("rb")
        except FileNotFoundError:
            return
        with file:
            while piece := file.read(_READ_BYTES):
                yield piece

    def drop(self, batch_id: str) -> None:
        """Forget a batch: its keys, its lines and its counts."""
        self._db.execute("DELETE FROM seen WHERE batch_id = ?", (batch_id,))
        for succeeded in (True, False):
            self._lines_path(batch_id, succeeded).unlink(missing_ok=True)
        self._counts.pop(batch_id, None)

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        self.close()
        _delete_database(self.path)
        shutil.rmtree(self._lines_dir, ignore_errors=True)

    def _lines_path(self, batch_id: str, succeeded: bool) -> Path:
        name = f"{_check_batch_id(batch_id)}.{'output' if succeeded else 'error'}"
        return self._lines_dir / name

    @staticmethod
    def _append(path: Path, lines: bytes) -> tuple[Path, int]:
        """Append ``lines``; return the path and its size before, to cut it back to."""
        with path.open("ab") as file:
            size = file.tell()
            try:
                file.write(lines)
            except BaseException:
                file.truncate(size)
                raise
        return path, size


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


class PrivateSpool(ResultSpool):
    """A ``ResultSpool`` in a ``PrivateDirectory`` under ``root``: close deletes both."""

    def __init__(self, root: Path | None = None) -> None:
        self.directory = PrivateDirectory(default_spool_root() if root is None else root)
        try:
            super().__init__(self.directory.path / SPOOL_FILE)
        except BaseException:
            self.directory.close()
            raise

    def close(self) -> None:
        super().close()
        self.directory.close()
