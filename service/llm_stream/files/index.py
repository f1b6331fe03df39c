"""The files' index: every listed file's record, in the store, in the order files are listed.

``GET /v1/files`` pages through files newest (or oldest) first. Reading every record per call
costs what history costs, so each stored file also has an index entry, kept in the store that
every gateway and aggregator already shares (a directory, or keys in a bucket), written after
the file's content and removed before it: no entry names missing content.

Entries live under ``_index/<purpose>/<D0>/<D1>/<D2>/<D3>/``, the buckets being pairs of the
10 digits of ``created_at`` (about 3 years, 12 days, 3 hours and 100 seconds wide: at most 100
names to list at each level), and an entry's name is its record:
``<created_at>~<file id>~<bytes>[~<percent-quoted filename>]`` (an upload's record is also its
content, read only when its filename is too long for a name); a file that expires has
``!<expires_at>`` after its size. A page lists the buckets it walks
through, newest or oldest first, and stops at ``limit`` entries: its cost is the page's and the
buckets', never history's. Each purpose has its own tree, so filtering by purpose skips nothing;
an unfiltered page merges the two trees.

Files of the default project (and every file stored before projects existed) are indexed right
under ``_index/``; each other project's under ``_index/projects/<project>/``, so a project's
page walks its own tree alone, and an admin's merges every project's (as many trees as
projects were configured).
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, get_args
from urllib.parse import quote, unquote

from llm_stream.contracts import stored_project
from llm_stream.files.atomic import write_atomically
from llm_stream.files.expiry import expiry_path
from llm_stream.files.records import FilePurpose, StoredFile

INDEX_DIR = "_index"
#: Under the index's root: one tree per project other than the default one.
PROJECTS_DIR = "projects"
#: Written once the files stored before the index existed are indexed (``index_existing``).
BUILT_MARKER = "built"
PURPOSES: tuple[FilePurpose, ...] = get_args(FilePurpose)
#: The digits of ``created_at`` each bucket level takes.
_LEVELS = ((0, 2), (2, 4), (4, 6), (6, 8))
_SEPARATOR = "~"  # in neither an upload id (hex) nor a batch id ([A-Za-z0-9_-])
_EXPIRES = "!"  # after the size: quoted filenames never hold it
#: Longest entry name: a local filesystem takes 255 bytes; a longer filename stays in content.
_MAX_NAME = 240


class IndexTree(Protocol):
    """Where entries are kept: paths are tuples of names under the index's root."""

    def children(self, path: tuple[str, ...]) -> list[str]:
        """The names directly under ``path`` (none if it does not exist), in any order."""
        ...

    def put(self, path: tuple[str, ...], content: bytes) -> None: ...

    def remove(self, path: tuple[str, ...]) -> None:
        """Remove the entry at ``path`` (idempotent)."""
        ...

    def read(self, path: tuple[str, ...]) -> bytes | None: ...


class _RecordOf(Protocol):
    def __call__(
        self, file_id: str, size: int, modified: float, project: str | None = None
    ) -> StoredFile: ...


@dataclass(frozen=True)
class _Entry:
    created_at: int
    id: str
    bytes: int
    filename: str | None  # None: derived (a batch file) or in the entry's content (an upload)
    expires_at: int | None
    path: tuple[str, ...]
    project: str | None
    purpose: str

    @property
    def order(self) -> tuple[int, str]:
        return self.created_at, self.id


def _buckets(created_at: int) -> tuple[str, ...]:
    digits = f"{created_at:010d}"
    return tuple(digits[start:end] for start, end in _LEVELS)


def _root(project: str | None) -> tuple[str, ...]:
    """Where a project's tree starts: the index's root for the default project."""
    stored = stored_project(project)
    return () if stored is None else (PROJECTS_DIR, stored)


def _path(record: StoredFile, project: str | None) -> tuple[str, ...]:
    name = f"{record.created_at:010d}{_SEPARATOR}{record.id}{_SEPARATOR}{record.bytes}"
    if record.expires_at is not None:
        name = f"{name}{_EXPIRES}{record.expires_at}"
    if record.purpose == "batch":
        named = f"{name}{_SEPARATOR}{quote(record.filename, safe='')}"
        name = named if len(named) <= _MAX_NAME else name
    return (*_root(project), record.purpose, *_buckets(record.created_at), name)


def _entry(path: tuple[str, ...], project: str | None, purpose: str) -> _Entry | None:
    """The entry a leaf's name encodes; None for a name that is not one (a stray file)."""
    parts = path[-1].split(_SEPARATOR, 3)
    if len(parts) < 3:
        return None
    size, _, expires = parts[2].partition(_EXPIRES)
    if not (parts[0].isdigit() and size.isdigit() and (not expires or expires.isdigit())):
        return None
    filename = unquote(parts[3]) if len(parts) == 4 else None
    expires_at = int(expires) if expires else None
    return _Entry(int(parts[0]), parts[1], int(size), filename, expires_at, path, project, purpose)


class FileIndex:
    """Add, remove and page through index entries in a tree (``LocalIndexTree`` or S3's)."""

    def __init__(self, tree: IndexTree, record_of: _RecordOf) -> None:
        """``record_of``: the record of a batch file from its id, size and time (the store's
        ``batch_file_record``: its filename is derived, not stored)."""
        self.tree = tree
        self._record_of = record_of

    def add(self, record: StoredFile) -> None:
        """Index the file, and its expiry (``files.expiry``) when it has one."""
        self.tree.put(_path(record, record.project), record.model_dump_json().encode())
        if (expiry := expiry_path(record)) is not None:
            self.tree.put(expiry, b"")

    def remove(self, record: StoredFile) -> None:
        self.tree.remove(_path(record, record.project))
        if (expiry := expiry_path(record)) is not None:
            self.tree.remove(expiry)

    def remove_from_every_project(self, record: StoredFile) -> None:
        """Remove ``record``'s entry whichever project's tree holds it (a batch file written
        again, whose earlier project no stored batch object says any more)."""
        for project in (None, *self.projects()):
            self.tree.remove(_path(record, project))
        if (expiry := expiry_path(record)) is not None:
            self.tree.remove(expiry)

    def projects(self) -> list[str]:
        """The projects other than the default one that have a tree."""
        return sorted(self.tree.children((PROJECTS_DIR,)))

    def is_built(self) -> bool:
        return self.tree.read((BUILT_MARKER,)) is not None

    def mark_built(self) -> None:
        self.tree.put((BUILT_MARKER,), b"")

    def page(
        self,
        *,
        purpose: str | None,
        descending: bool,
        after: StoredFile | None,
        limit: int,
        project: str | None = None,
        now: float | None = None,
    ) -> list[StoredFile]:
        """Up to ``limit`` records in ``(created_at, id)`` order (reversed when descending),
        those after ``after``'s place only; ``purpose`` None lists every purpose; ``project``
        None lists every project's files (an admin's list); ``now``: leave out the files
        expired by then (not yet deleted)."""
        chosen = [p for p in PURPOSES if purpose is None or p == purpose]
        projects = [None, *self.projects()] if project is None else [project]
        cursor = None if after is None else (after.created_at, after.id)
        walks = [
            self._walk(_root(owner), (p,), cursor, descending) for owner in projects for p in chosen
        ]
        merged = heapq.merge(*walks, key=lambda entry: entry.order, reverse=descending)
        # An entry whose record cannot be read any more (deleted meanwhile) is skipped, and the
        # page filled from the entries after it.
        records = (record for entry in merged if (record := self._record(entry)) is not None)
        if now is not None:
            records = (record for record in records if not record.expired(now))
        return list(itertools.islice(records, limit))

    def _walk(
        self,
        root: tuple[str, ...],
        path: tuple[str, ...],
        cursor: tuple[int, str] | None,
        descending: bool,
    ) -> Iterator[_Entry]:
        """The entries under ``root + path`` (``path``: a purpose and buckets) in order,
        lazily, after ``cursor`` where it applies."""
        names = self.tree.children((*root, *path))
        depth = len(path) - 1
        if depth < len(_LEVELS):
            start, end = _LEVELS[depth]
            bound = None if cursor is None else _buckets(cursor[0])[depth]
            for name in sorted(names, reverse=descending):
                if len(name) != end - start or not name.isdigit():
                    continue
                if bound is not None and (name > bound if descending else name < bound):
                    continue  # wholly before the cursor
                below = cursor if name == bound else None
                yield from self._walk(root, (*path, name), below, descending)
            return
        project = root[-1] if root else None
        entries = [
            entry
            for name in names
            if (entry := _entry((*root, *path, name), project, path[0])) is not None
        ]
        for entry in sorted(entries, key=lambda entry: entry.order, reverse=descending):
            if cursor is None or (entry.order < cursor if descending else entry.order > cursor):
                yield entry

    def _record(self, entry: _Entry) -> StoredFile | None:
        if entry.purpose == "batch_output":
            try:
                found = self._record_of(entry.id, entry.bytes, entry.created_at, entry.project)
            except ValueError:  # a stray name that is no batch file's id
                return None
            return found.model_copy(update={"expires_at": entry.expires_at})
        if entry.filename is not None:
            return StoredFile(
                id=entry.id,
                bytes=entry.bytes,
                created_at=entry.created_at,
                filename=entry.filename,
                purpose="batch",
                project=entry.project,
                expires_at=entry.expires_at,
            )
        stored = self.tree.read(entry.path)  # a filename too long for the entry's name
        return None if stored is None else StoredFile.model_validate_json(stored)


class LocalIndexTree:
    """An ``IndexTree`` in a directory: entries are files, written atomically through
    ``staging`` (the store's staging directory, whose leftovers are tidied at start)."""

    def __init__(self, root: Path, staging: Path) -> None:
        self.root = root
        self.staging = staging

    def children(self, path: tuple[str, ...]) -> list[str]:
        try:
            return [name for name in os.listdir(self.root.joinpath(*path)) if name[:1] != "."]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def put(self, path: tuple[str, ...], content: bytes) -> None:
        write_atomically(self.root.joinpath(*path), [content], staging=self.staging)

    def remove(self, path: tuple[str, ...]) -> None:
        # Empty buckets stay: removing one could race a writer that has just made it.
        self.root.joinpath(*path).unlink(missing_ok=True)

    def read(self, path: tuple[str, ...]) -> bytes | None:
        try:
            return self.root.joinpath(*path).read_bytes()
        except FileNotFoundError:
            return None
