from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from llm_stream.aggregator.spool import (
    OutputIndex,
    PrivateSpool,
    ResultSpool,
    default_spool_root,
)
from llm_stream.ops.private_dir import sweep_stale


def _joined(spool: ResultSpool, batch_id: str, *, succeeded: bool) -> bytes:
    return b"".join(spool.lines(batch_id, succeeded=succeeded))


def test_first_delivery_of_a_custom_id_wins(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "b.sqlite")
    assert spool.add("b", [("a", True, b"a1\n"), ("b", False, b"b1\n")]) == 2
    assert spool.add("b", [("a", False, b"a2\n"), ("c", True, b"c1\n")]) == 1
    assert (spool.completed("b"), spool.failed("b"), spool.total("b")) == (2, 1, 3)
    assert _joined(spool, "b", succeeded=True) == b"a1\nc1\n"
    assert _joined(spool, "b", succeeded=False) == b"b1\n"
    spool.close()


def test_insert_names_the_new_rows_when_a_poll_repeats_some(tmp_path: Path) -> None:
    """One poll may hold a redelivery of a stored row and a duplicate of its own row."""
    spool = ResultSpool(tmp_path / "results.sqlite")
    assert spool.insert("b", [("a", True, b"a1"), ("b", True, b"b1")]) == [0, 1]
    poll = [("c", False, b"c1"), ("a", False, b"a2"), ("d", True, b"d1"), ("c", True, b"c2")]
    assert spool.insert("b", poll) == [0, 2]
    assert (spool.completed("b"), spool.failed("b")) == (3, 1)
    assert _joined(spool, "b", succeeded=True) == b"a1b1d1"
    assert _joined(spool, "b", succeeded=False) == b"c1"
    spool.close()


def test_a_large_batch_is_read_back_in_bounded_pieces(tmp_path: Path) -> None:
    """Writing a file streams the lines 64 KiB at a time, whatever the batch's size."""
    spool = ResultSpool(tmp_path / "results.sqlite")
    line = b"x" * 1000 + b"\n"
    for start in range(0, 300, 100):
        spool.add("b", [(f"c{i}", True, line) for i in range(start, start + 100)])
    pieces = list(spool.lines("b", succeeded=True))
    assert len(pieces) > 1
    assert max(map(len, pieces)) <= 1 << 16
    assert b"".join(pieces) == line * 300
    assert list(spool.lines("b", succeeded=False)) == []
    spool.close()


def test_a_step_that_fails_stores_neither_its_keys_nor_its_lines(tmp_path: Path) -> None:
    """A key is stored exactly when its line is: a failed step leaves the batch as it was, so
    re-reading its records stores each line once."""
    spool = ResultSpool(tmp_path / "results.sqlite")
    spool.add("b", [("a", True, b"a1\n")])
    blocked = tmp_path / "results.sqlite.lines" / "b.error"
    blocked.mkdir()  # the error lines cannot be appended
    with pytest.raises(IsADirectoryError):
        spool.add("b", [("b", True, b"b1\n"), ("c", False, b"c1\n")])
    assert (spool.completed("b"), spool.failed("b")) == (1, 0)
    assert _joined(spool, "b", succeeded=True) == b"a1\n"
    blocked.rmdir()
    assert spool.add("b", [("b", True, b"b1\n"), ("c", False, b"c1\n")]) == 2
    assert _joined(spool, "b", succeeded=True) == b"a1\nb1\n"
    assert _joined(spool, "b", succeeded=False) == b"c1\n"
    spool.close()


def test_a_dropped_batch_leaves_no_line_file(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "results.sqlite")
    spool.add("b", [("a", True, b"a1\n"), ("b", False, b"b1\n")])
    spool.drop("b")
    assert list((tmp_path / "results.sqlite.lines").iterdir()) == []
    spool.close()


def test_a_batch_id_that_could_leave_its_name_is_refused(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "results.sqlite")
    for unsafe in ('b"; DROP TABLE x; --', "../b", ""):
        with pytest.raises(ValueError, match="not a batch id"):
            spool.add(unsafe, [("a", True, b"a1\n")])
    spool.close()


def test_a_reopened_spool_keeps_its_rows_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    spool = ResultSpool(path)
    spool.add("b", [("a", True, b"a1"), ("b", False, b"b1")])
    spool.close()
    reopened = ResultSpool(path)
    assert (reopened.completed("b"), reopened.failed("b")) == (1, 1)
    assert reopened.add("b", [("a", True, b"again")]) == 0
    assert _joined(reopened, "b", succeeded=True) == b"a1"
    reopened.close()


def test_delete_removes_every_file(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "b.sqlite")
    spool.add("b", [("a", True, b"x")])
    spool.delete()
    assert list(tmp_path.iterdir()) == []


def test_an_output_index_finds_the_first_line_of_each_custom_id(tmp_path: Path) -> None:
    index = OutputIndex(tmp_path / "index.db")
    assert index.add([("a", b"a1"), ("b", b"b1")]) == 2
    assert index.add([("a", b"a2"), ("c", b"c1")]) == 1
    assert (index.get("a"), index.get("c"), index.get("missing")) == (b"a1", b"c1", None)
    index.delete()
    assert list(tmp_path.iterdir()) == []


def test_batches_share_one_database_but_not_their_rows(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "results.sqlite")
    assert spool.add("b1", [("a", True, b"1a"), ("b", False, b"1b")]) == 2
    assert spool.add("b2", [("a", True, b"2a")]) == 1  # same custom_id, other batch: kept
    assert spool.add("b1", [("a", True, b"again")]) == 0
    assert (spool.completed("b1"), spool.failed("b1"), spool.total("b2")) == (1, 1, 1)
    assert _joined(spool, "b1", succeeded=True) == b"1a"
    assert _joined(spool, "b2", succeeded=True) == b"2a"
    spool.drop("b1")
    assert spool.total("b1") == 0
    assert _joined(spool, "b1", succeeded=False) == b""
    assert spool.add("b1", [("a", True, b"new")]) == 1  # a dropped batch can be re-read
    assert _joined(spool, "b2", succeeded=True) == b"2a"
    spool.close()


def test_a_spool_keeps_arrival_order_across_many_adds(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "results.sqlite")
    for i in reversed(range(50)):
        spool.add("b", [(f"c{i}", True, f"{i}".encode())])
        spool.add("other", [(f"c{i}", True, b"x")])
    assert _joined(spool, "b", succeeded=True) == b"".join(
        f"{i}".encode() for i in reversed(range(50))
    )
    spool.close()


_HOLD = """
import sys, time
from pathlib import Path
from llm_stream.aggregator.spool import PrivateSpool
spool = PrivateSpool(Path(sys.argv[1]))
print(spool.directory.path, flush=True)
time.sleep(60)
"""


def _start_holder(root: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_spools_of_dead_processes_are_swept_and_live_ones_are_not(tmp_path: Path) -> None:
    live, live_dir = _start_holder(tmp_path)
    dead, dead_dir = _start_holder(tmp_path)
    try:
        dead.kill()
        dead.wait()
        assert (dead_dir / "results.sqlite").exists()  # SIGKILL: nothing cleaned up
        mine = PrivateSpool(tmp_path)
        assert not dead_dir.exists()
        assert (live_dir / "results.sqlite").exists()
        assert mine.directory.path not in (live_dir, dead_dir)
        mine.close()
        assert not mine.directory.path.exists()
        assert live_dir.exists()
    finally:
        live.kill()
        live.wait()
    assert sweep_stale(tmp_path) == [live_dir]


def test_the_default_root_is_per_user_under_the_temp_dir() -> None:
    spool = PrivateSpool()
    try:
        assert spool.directory.path.parent == default_spool_root()
        assert default_spool_root().parent == Path(tempfile.gettempdir())
        assert str(os.getuid()) in default_spool_root().name
    finally:
        spool.close()
    assert not spool.directory.path.exists()
