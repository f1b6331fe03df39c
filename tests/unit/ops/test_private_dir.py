"""A directory one process owns while it lives: locked while its owner lives, deleted on close,
and swept by the next process once its owner is dead."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

import pytest

from llm_stream.ops.private_dir import LOCK_FILE, PrivateDirectory, sweep_stale


def test_a_directory_without_a_lock_is_swept_only_once_old(tmp_path: Path) -> None:
    young, old = tmp_path / "young", tmp_path / "old"
    young.mkdir()
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "a-file").write_bytes(b"")
    assert sweep_stale(tmp_path) == [old]
    assert young.exists()
    assert (tmp_path / "a-file").exists()


def test_a_private_directory_is_the_owners_alone_and_locked_while_it_lives(tmp_path: Path) -> None:
    directory = PrivateDirectory(tmp_path / "root")
    try:
        assert directory.path.parent == tmp_path / "root"
        assert stat.S_IMODE(directory.path.stat().st_mode) == 0o700
        other = os.open(directory.path / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        assert sweep_stale(tmp_path / "root") == []  # a live owner's: kept
    finally:
        directory.close()
    assert not directory.path.exists()
    directory.close()  # idempotent


def test_a_directory_whose_owner_died_is_swept_by_the_next_one(tmp_path: Path) -> None:
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / LOCK_FILE).write_bytes(b"")  # its lock went with its process
    (dead / "results.sqlite").write_bytes(b"left behind")
    mine = PrivateDirectory(tmp_path)
    try:
        assert not dead.exists()
        assert mine.path.exists()
    finally:
        mine.close()


def test_a_root_not_there_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep_stale(tmp_path / "absent") == []
    (tmp_path / "a-file").write_bytes(b"")
    assert sweep_stale(tmp_path / "a-file") == []


def test_a_symlink_under_the_root_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_bytes(b"")
    os.utime(elsewhere, (time.time() - 3600, time.time() - 3600))
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    assert sweep_stale(root) == []
    assert (elsewhere / "keep").exists()
