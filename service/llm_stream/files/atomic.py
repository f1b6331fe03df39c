"""Write files so that a reader sees either nothing or the whole file, even after a crash.

Several aggregators (on several hosts) may write into one output directory on a shared volume,
so temporary names carry a uuid, not a pid. A rename is durable only once its directory is
fsynced, and a new directory only once its parent is: both are done here. A writer may keep its
temporaries in one staging directory (on the same filesystem, so the rename stays atomic): then
the leftovers of crashed writers are found by listing that directory, not the whole tree.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """Make the entries of ``path`` (renames, new files and subdirectories) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_directories(path: Path) -> None:
    """``mkdir -p`` whose new directories survive a crash: each parent is fsynced after."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # created concurrently: fine, if it is a directory
            if not directory.is_dir():
                raise
        fsync_directory(directory.parent)  # even if another made it: it may not have synced yet


def write_atomically(path: Path, chunks: Iterable[bytes], *, staging: Path | None = None) -> int:
    """Write ``chunks`` to a temporary file (a sibling, or in ``staging``), fsync it, rename it
    over ``path``, fsync the directory. Returns the number of bytes written."""
    make_directories(path.parent)
    if staging is not None:
        make_directories(staging)
    temporary = (staging or path.parent) / f".{path.name}.tmp-{uuid.uuid4().hex}"
    written = 0
    try:
        with temporary.open("xb") as file:
            for chunk in chunks:
                file.write(chunk)
                written += len(chunk)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return written


def remove_stale(directory: Path, older_than_s: float) -> int:
    """Remove the files in ``directory`` unmodified for ``older_than_s`` seconds (a writer's
    temporary is modified as it is written, so one in flight is left alone); return how many."""
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in os.scandir(directory) if directory.is_dir() else ():
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # removed meanwhile (its writer finished, or another tidier)
            continue
    return removed
