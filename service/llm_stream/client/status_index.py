"""The latest manifest and batch object of every batch the status view has read, in SQLite.

Why on disk: a view of every partition (the gateway's) holds every batch ever made until its
records are deleted (compaction and tombstones). Held in the heap, that history would set the
process's memory and a list would sort all of it. Here it lies in a private file with a small
page cache: a batch is one primary-key lookup and a page of the list one range of an index on
``(created_at DESC, id DESC)``, whatever the history; a project's page one range of an index
on ``(project, created_at DESC, id DESC)``, whatever other projects hold.

One writer, one reader: records are applied in the index's own thread, on a connection only
that thread uses, so the event loop never waits on a write; reads run on the event loop on a
second connection (a lookup costs microseconds) and, in WAL mode, see the last committed state
while the writer writes. The file is a cache of the topics, rebuilt from them on every start:
written without fsync, deleted on close, and a dead process's file is swept by the next one.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.contracts import is_project_id, owner_project
from llm_stream.ops.sqlite_index import SqliteIndex

INDEX_FILE = "status.sqlite"

_SCHEMA = """
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    status BLOB,
    status_created_at INTEGER,
    status_project TEXT,
    manifest BLOB,
    manifest_created_at INTEGER,
    manifest_project TEXT,
    created_at INTEGER GENERATED ALWAYS AS (coalesce(status_created_at, manifest_created_at)),
    project TEXT GENERATED ALWAYS AS (
        CASE WHEN status IS NOT NULL THEN status_project ELSE manifest_project END
    )
);
CREATE INDEX newest_first ON batches (created_at DESC, id DESC) WHERE created_at IS NOT NULL;
CREATE INDEX project_newest_first ON batches (project, created_at DESC, id DESC)
    WHERE created_at IS NOT NULL;
CREATE TABLE enqueued (
    id TEXT,
    project TEXT,
    model TEXT,
    tokens INTEGER,
    PRIMARY KEY (id, model)
);
CREATE INDEX enqueued_by_project ON enqueued (project, model);
"""
_PUT = {
    kind: f"INSERT INTO batches (id, {kind}, {kind}_created_at, {kind}_project)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    f" {kind} = excluded.{kind}, {kind}_created_at = excluded.{kind}_created_at,"
    f" {kind}_project = excluded.{kind}_project"
    for kind in ("status", "manifest")
}
_FORGET = {
    kind: f"UPDATE batches SET {kind} = NULL, {kind}_created_at = NULL, {kind}_project = NULL"
    " WHERE id = ?"
    for kind in ("status", "manifest")
}
_DROP_EMPTY = "DELETE FROM batches WHERE id = ? AND status IS NULL AND manifest IS NULL"
_COLUMNS = "SELECT id, status, manifest FROM batches"
_UNCOUNT = "DELETE FROM enqueued WHERE id = ?"
_COUNT = "INSERT INTO enqueued (id, project, model, tokens) VALUES (?, ?, ?, ?)"
_ENQUEUED = (
    "SELECT count(*), coalesce(sum(tokens), 0) FROM enqueued WHERE project = ? AND model = ?"
)
_ENQUEUED_ALL = (
    "SELECT project, model, count(*), coalesce(sum(tokens), 0) FROM enqueued"
    " GROUP BY project, model ORDER BY project, model"
)
_NEWEST = f"{_COLUMNS} WHERE created_at IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT ?"
_AFTER = (
    f"{_COLUMNS} WHERE created_at IS NOT NULL AND (created_at, id) < (?, ?)"
    " ORDER BY created_at DESC, id DESC LIMIT ?"
)
_PROJECT_NEWEST = (
    f"{_COLUMNS} WHERE project = ? AND created_at IS NOT NULL"
    " ORDER BY created_at DESC, id DESC LIMIT ?"
)
_PROJECT_AFTER = (
    f"{_COLUMNS} WHERE project = ? AND created_at IS NOT NULL AND (created_at, id) < (?, ?)"
    " ORDER BY created_at DESC, id DESC LIMIT ?"
)


class Record(NamedTuple):
    """One record as the index takes it: a batch object (``is_status``) or a manifest,
    ``value`` None for a tombstone."""

    is_status: bool
    batch_id: str
    value: bytes | None


class Enqueued(NamedTuple):
    """A project's unfinished batches for one model, and their estimated input tokens."""

    batches: int
    tokens: int


class Row(NamedTuple):
    """A batch's latest batch object and manifest (either may be missing)."""

    batch_id: str
    status: bytes | None
    manifest: bytes | None


def default_index_root() -> Path:
    """Under the system temp dir, one per user (a shared name would be another user's)."""
    return Path(tempfile.gettempdir()) / f"llm-stream-status-{os.getuid()}"


def _fields(value: bytes) -> dict[str, Any]:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def created_at(value: bytes) -> int | None:
    """The record's ``created_at``: where it is listed; None (not listed) for a record that is
    not a JSON object with an integer ``created_at``. Whether the rest is a valid batch object
    is checked when it is read."""
    found = _fields(value).get("created_at")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def project_of(value: bytes) -> str:
    """The project a record's batch belongs to: the one it names, else the default project
    (a record that names none, or something that is no project id)."""
    found = _fields(value).get("project")
    return owner_project(found if isinstance(found, str) and is_project_id(found) else None)


def enqueued_tokens(manifest: bytes, status: bytes | None) -> dict[str, int]:
    """What an unfinished batch counts against its project's quotas, by model: the manifest's
    ``input_tokens`` (0 for a model it names without counting them); nothing once the batch
    object says it ended."""
    if status is not None and _fields(status).get("status") in TERMINAL_STATUSES:
        return {}
    fields = _fields(manifest)
    models = fields.get("models") or [fields.get("model")]
    counted = fields.get("input_tokens")
    counted = counted if isinstance(counted, dict) else {}
    return {
        model: _count(counted.get(model))
        for model in (models if isinstance(models, list) else [])
        if isinstance(model, str) and model
    }


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class StatusIndex(SqliteIndex["Record"]):
    """Batches by id and newest first; ``apply`` from the event loop, reads on it."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(default_index_root() if root is None else root, INDEX_FILE, _SCHEMA)

    def get(self, batch_id: str) -> Row | None:
        found = self._reader.execute(f"{_COLUMNS} WHERE id = ?", (batch_id,)).fetchone()
        return None if found is None else Row(*found)

    def listed_at(self, batch_id: str, project: str | None = None) -> int | None:
        """Where the batch stands in the list (its ``created_at``); None when it is not listed
        (or, given ``project``, is not that project's)."""
        query = "SELECT created_at, project FROM batches WHERE id = ? AND created_at IS NOT NULL"
        found = self._reader.execute(query, (batch_id,)).fetchone()
        if found is None or (project is not None and found[1] != project):
            return None
        return int(found[0])

    def newest(
        self, limit: int, after: tuple[int, str] | None = None, project: str | None = None
    ) -> list[Row]:
        """Up to ``limit`` listed batches, newest first (``created_at``, then id), after the
        position ``after`` (``(created_at, id)``) when given; ``project``'s only when given
        (the default project's by its name), from its own index range."""
        if project is not None:
            if after is None:
                found = self._reader.execute(_PROJECT_NEWEST, (project, limit))
            else:
                found = self._reader.execute(_PROJECT_AFTER, (project, *after, limit))
        elif after is None:
            found = self._reader.execute(_NEWEST, (limit,))
        else:
            found = self._reader.execute(_AFTER, (*after, limit))
        return [Row(*row) for row in found]

    def enqueued(self, project: str, model: str) -> Enqueued:
        """``project``'s unfinished batches for ``model`` and their estimated input tokens."""
        batches, tokens = self._reader.execute(_ENQUEUED, (project, model)).fetchone()
        return Enqueued(int(batches), int(tokens))

    def enqueued_by_project(self) -> list[tuple[str, str, Enqueued]]:
        """``(project, model, enqueued)`` for every pair with unfinished batches (metrics)."""
        found = self._reader.execute(_ENQUEUED_ALL)
        return [
            (project, model, Enqueued(batches, tokens)) for project, model, batches, tokens in found
        ]

    def batch_ids(self) -> list[str]:
        """Every batch id held, sorted (for tests and tools: it reads the whole table)."""
        return [row[0] for row in self._reader.execute("SELECT id FROM batches ORDER BY id")]

    def _store(self, db: sqlite3.Connection, records: Sequence[Record]) -> None:
        for record in records:
            kind = "status" if record.is_status else "manifest"
            if record.value is None:  # a tombstone: the batch is forgotten
                db.execute(_FORGET[kind], (record.batch_id,))
                db.execute(_DROP_EMPTY, (record.batch_id,))
            else:
                listed_at = created_at(record.value)
                project = project_of(record.value)
                db.execute(_PUT[kind], (record.batch_id, record.value, listed_at, project))
            _recount(db, record.batch_id)


def _recount(db: sqlite3.Connection, batch_id: str) -> None:
    """Count the batch against its project's quotas again, as its latest records say."""
    db.execute(_UNCOUNT, (batch_id,))
    found = db.execute("SELECT status, manifest FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if found is None or found[1] is None:
        return
    status, manifest = found
    project = project_of(manifest)
    counted = enqueued_tokens(manifest, status)
    db.executemany(_COUNT, [(batch_id, project, model, n) for model, n in counted.items()])
