from __future__ import annotations

from pathlib import Path

from service.spool import BatchSpool


def test_first_delivery_of_a_custom_id_wins(tmp_path: Path) -> None:
    spool = BatchSpool(tmp_path / "b.sqlite")
    assert spool.add([("a", True, b"a1"), ("b", False, b"b1")]) == 2
    assert spool.add([("a", False, b"a2"), ("c", True, b"c1")]) == 1
    assert (spool.completed, spool.failed, spool.total) == (2, 1, 3)
    assert list(spool.lines(succeeded=True)) == [b"a1", b"c1"]
    assert list(spool.lines(succeeded=False)) == [b"b1"]


def test_a_reopened_spool_keeps_its_rows_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    spool = BatchSpool(path)
    spool.add([("a", True, b"a1"), ("b", False, b"b1")])
    spool.close()
    reopened = BatchSpool(path)
    assert (reopened.completed, reopened.failed) == (1, 1)
    assert reopened.add([("a", True, b"again")]) == 0


def test_delete_removes_every_file(tmp_path: Path) -> None:
    spool = BatchSpool(tmp_path / "b.sqlite")
    spool.add([("a", True, b"x")])
    spool.delete()
    assert list(tmp_path.iterdir()) == []
