"""The judgements a gateway has read from their topic, in SQLite on disk.

Why on disk: the gateway follows the judgements topic whole, and held in the heap every
judgement of every batch would stay there for the process's life. Here a line's judgement is
one row of a private file with a small page cache: a page of lines is one range of the primary
key ``(batch_id, custom_id)``, whatever the history. A tombstone (a record with no value)
deletes its line's row, so the file holds what the compacted topic holds: the judgements of
batches not yet retired (``aggregator.retirement`` tombstones those of retired batches).

Modelled on ``client.status_index``: records are written in the index's own thread, on a
connection only it uses, so the event loop never waits on a write; reads run on the event loop
on a second connection and, in WAL mode, see the last committed state. The file is a cache of
the topic, rebuilt on every start: written without fsync, deleted on close, and a dead
process's file is swept by the next one.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import pydantic

from llm_stream.contracts import Judgement
from llm_stream.ops.sqlite_index import SqliteIndex

INDEX_FILE = "judgements.sqlite"
#: SQLite's default bound on the parameters of one statement is 999 (older builds).
_IDS_PER_QUERY = 500

_SCHEMA = """
CREATE TABLE judgements (
    batch_id TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    judged_at REAL NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (batch_id, custom_id)
) WITHOUT ROWID;
"""
#: The later judgement of a line wins (by ``judged_at``; on a tie, the later record).
_PUT = (
    "INSERT INTO judgements VALUES (?, ?, ?, ?) ON CONFLICT (batch_id, custom_id) DO UPDATE"
    " SET judged_at = excluded.judged_at, value = excluded.value"
    " WHERE excluded.judged_at >= judgements.judged_at"
)
_FORGET = "DELETE FROM judgements WHERE batch_id = ? AND custom_id = ?"
_PAGE = "SELECT value FROM judgements WHERE batch_id = ? AND custom_id > ? ORDER BY custom_id"


class Record(NamedTuple):
    """A record of the judgements topic as the index takes it."""

    key: bytes | None
    value: bytes | None


class Forgotten(NamedTuple):
    """A tombstone's line: its judgement is deleted (its batch was retired)."""

    batch_id: str
    custom_id: str


def default_index_root() -> Path:
    """Under the system temp dir, one per user (a shared name would be another user's)."""
    return Path(tempfile.gettempdir()) / f"llm-stream-judgements-{os.getuid()}"


def parse_judgement(value: bytes | None) -> Judgement | None:
    """A record's judgement, or None (a tombstone, or a record that is none)."""
    if value is None:
        return None
    try:
        return Judgement.model_validate_json(value)
    except pydantic.ValidationError:
        return None


def line_of(key: bytes | None) -> tuple[str, str] | None:
    """The ``(batch_id, custom_id)`` a record's key names (``<batch_id>/<custom_id>``)."""
    if key is None:
        return None
    batch_id, slash, custom_id = key.decode(errors="replace").partition("/")
    return (batch_id, custom_id) if slash and batch_id and custom_id else None


class JudgementIndex(SqliteIndex["Record"]):
    """Judgements by batch and line; ``apply`` from the event loop, reads on it."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(default_index_root() if root is None else root, INDEX_FILE, _SCHEMA)

    def of_batch(self, batch_id: str, after: str = "", limit: int = -1) -> list[Judgement]:
        """Up to ``limit`` (-1: every) of the batch's judgements, by custom_id, after the
        custom_id ``after``: one range of the primary key."""
        found = self._reader.execute(f"{_PAGE} LIMIT ?", (batch_id, after, limit))
        return [Judgement.model_validate_json(value) for (value,) in found]

    def of_lines(self, batch_id: str, custom_ids: Iterable[str]) -> dict[str, Judgement]:
        """The judgements of these lines (a page's), by custom_id."""
        wanted = list(dict.fromkeys(custom_ids))
        judged: dict[str, Judgement] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            part = wanted[start : start + _IDS_PER_QUERY]
            query = (
                "SELECT value FROM judgements WHERE batch_id = ? AND custom_id IN "
                f"({', '.join('?' * len(part))})"
            )
            for (value,) in self._reader.execute(query, (batch_id, *part)):
                judgement = Judgement.model_validate_json(value)
                judged[judgement.custom_id] = judgement
        return judged

    def count(self) -> int:
        """Judgements held (for tests and metrics: it counts the table)."""
        return int(self._reader.execute("SELECT count(*) FROM judgements").fetchone()[0])

    def _store(self, db: sqlite3.Connection, records: Sequence[Record]) -> None:
        for record in records:
            judgement = parse_judgement(record.value)
            if judgement is not None:
                row = (judgement.batch_id, judgement.custom_id, judgement.judged_at)
                db.execute(_PUT, (*row, record.value))
            elif record.value is None and (line := line_of(record.key)) is not None:
                db.execute(_FORGET, line)  # a tombstone: the line is no longer judged
