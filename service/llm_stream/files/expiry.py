"""Files that expire: their entries by expiry time, beside the files' index, and the sweep that
deletes those due.

A file with an ``expires_at`` (an upload's ``expires_after``, a batch's
``output_expires_after``, or the deployment's defaults) has, besides its index entry, an entry
``expiry/<D0>/<D1>/<D2>/<D3>/<expires_at>~<file id>`` under the index's root (buckets of the 10
digits of ``expires_at``, as the index buckets ``created_at``), written and removed with its
index entry (``FileIndex.add`` and ``remove``). The sweep walks those buckets oldest first and
stops at the first entry not yet due: its cost is that of the files due, never of history. A
file past its expiry is answered as a deleted one at once (``StoredFile.expired``), before the
sweep deletes it from disk or the bucket.

The sweep itself is ``files.upkeep.sweep_expired``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from llm_stream.files.records import StoredFile


class _Tree(Protocol):
    """What the walk needs of ``files.index.IndexTree``."""

    def children(self, path: tuple[str, ...]) -> list[str]: ...


EXPIRY_DIR = "expiry"
_LEVELS = ((0, 2), (2, 4), (4, 6), (6, 8))
_SEPARATOR = "~"
#: Files deleted at most per sweep: the next sweep goes on.
SWEEP_LIMIT = 1000


def _buckets(expires_at: int) -> tuple[str, ...]:
    digits = f"{expires_at:010d}"
    return tuple(digits[start:end] for start, end in _LEVELS)


def expiry_path(record: StoredFile) -> tuple[str, ...] | None:
    """Where ``record``'s expiry entry lies under the index's root; None: it never expires."""
    return None if record.expires_at is None else entry_path(record.expires_at, record.id)


def entry_path(expires_at: int, file_id: str) -> tuple[str, ...]:
    return (EXPIRY_DIR, *_buckets(expires_at), f"{expires_at:010d}{_SEPARATOR}{file_id}")


def due(tree: _Tree, now: float, limit: int = SWEEP_LIMIT) -> list[tuple[int, str]]:
    """Up to ``limit`` ``(expires_at, file id)`` of files due by ``now``, oldest first."""
    found: list[tuple[int, str]] = []
    for expires_at, found_id in _walk(tree, (EXPIRY_DIR,), _buckets(int(now)), 0):
        if expires_at > now or len(found) >= limit:
            break
        found.append((expires_at, found_id))
    return found


def _walk(
    tree: _Tree, path: tuple[str, ...], bound: tuple[str, ...], depth: int
) -> Iterator[tuple[int, str]]:
    names = sorted(tree.children(path))
    if depth < len(_LEVELS):
        start, end = _LEVELS[depth]
        for name in names:
            if len(name) != end - start or not name.isdigit():
                continue
            if name > bound[depth]:
                return  # this bucket and those after it are not due yet
            below = bound if name == bound[depth] else ("99",) * len(_LEVELS)
            yield from _walk(tree, (*path, name), below, depth + 1)
        return
    entries = []
    for name in names:
        expires, _, file_id = name.partition(_SEPARATOR)
        if expires.isdigit() and file_id:
            entries.append((int(expires), file_id))
    yield from sorted(entries)
