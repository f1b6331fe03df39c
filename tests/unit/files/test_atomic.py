from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.files import atomic as atomic_files
from llm_stream.files.atomic import make_directories, write_atomically


def test_writes_the_whole_file_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "out" / "output.jsonl"
    assert write_atomically(target, [b"a\n", b"b\n"]) == 4
    assert target.read_bytes() == b"a\n b\n".replace(b" ", b"")
    assert [p.name for p in target.parent.iterdir()] == ["output.jsonl"]


def test_a_failure_midway_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "output.jsonl"
    target.write_bytes(b"old\n")

    def failing() -> Iterator[bytes]:
        yield b"new\n"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomically(target, failing())
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["output.jsonl"]


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths fsynced, in order (directories end with a slash), and renames as ``rename:``."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        events.append(path + "/" if os.path.isdir(path) else path)
        real_fsync(descriptor)

    def replace(self: Path, target: Path) -> Path:
        events.append(f"rename:{Path(target).name}")
        return real_replace(self, target)

    monkeypatch.setattr(atomic_files.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    return events


def test_the_file_is_synced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path.joinpath("out").mkdir()
    events = _record_fsyncs(monkeypatch)
    write_atomically(tmp_path / "out" / "batch.json", [b"{}"])
    directory = str(tmp_path / "out") + "/"
    assert len(events) == 3
    assert re.fullmatch(r".*/out/\.batch\.json\.tmp-[0-9a-f]{32}", events[0])
    assert events[1:] == ["rename:batch.json", directory]


def test_new_directories_are_synced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _record_fsyncs(monkeypatch)
    write_atomically(tmp_path / "a" / "b" / "f", [b"x"])
    assert events[:2] == [f"{tmp_path}/", f"{tmp_path}/a/"]  # after mkdir a, after mkdir a/b
    assert events[-1] == f"{tmp_path}/a/b/"


def test_temporary_names_are_unique_per_write_not_per_process(tmp_path: Path) -> None:
    seen: list[str] = []

    def chunks() -> Iterator[bytes]:
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
        yield b"x"

    write_atomically(tmp_path / "f", chunks())
    write_atomically(tmp_path / "f", chunks())
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert str(os.getpid()) not in seen[0]


def test_make_directories_accepts_a_directory_made_by_someone_else(tmp_path: Path) -> None:
    make_directories(tmp_path / "x" / "y")
    make_directories(tmp_path / "x" / "y")
    assert (tmp_path / "x" / "y").is_dir()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        make_directories(tmp_path / "file" / "sub")
