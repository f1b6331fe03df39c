"""A directory private to one process (a spool, an index), and the sweep of dead owners' ones.

Each lives under a root shared by the processes of one user; a process holds an exclusive lock
on a file in its own directory while it lives, so another process can tell a dead owner's
directory from a live one and delete it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = "owner.lock"

#: A directory without a lock file is being created; after this long its creator is gone.
_UNLOCKED_GRACE_S = 600.0


def sweep_stale(root: Path) -> list[Path]:
    """Delete the private directories under ``root`` whose owner is dead; return them."""
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
        logger.info("swept %d private directories of dead processes under %s", len(swept), root)
    return swept


class PrivateDirectory:
    """A directory only this process uses while it lives, deleted on close."""

    def __init__(self, root: Path) -> None:
        self.root = root
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
