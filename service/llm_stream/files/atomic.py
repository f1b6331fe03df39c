"""Write files so that a reader sees either nothing or the whole file, even after a crash.

Several aggregators (on several hosts) may write into one output directory on a shared volume,
so temporary names carry a uuid, not a pid. A rename is durable only once its directory is
fsynced, and a new directory only once its parent is: both are done here.
"""

from __future__ import annotations

import os
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


def write_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to a temporary sibling, fsync it, rename it over ``path``, fsync the
    directory. Returns the number of bytes written."""
    make_directories(path.parent)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
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
