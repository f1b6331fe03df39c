from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.atomic_files import write_atomically


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
