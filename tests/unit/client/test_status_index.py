"""The status view's index on disk: lookups by id, pages newest first, tombstones forget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from llm_stream.client.status_index import Record, StatusIndex, created_at


def _object(batch_id: str, created: int, status: str = "completed") -> bytes:
    return orjson.dumps({"id": batch_id, "created_at": created, "status": status})


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[StatusIndex]:
    opened = StatusIndex(tmp_path)
    yield opened
    opened.close()


async def test_the_latest_record_of_each_kind_is_kept_by_batch_id(index: StatusIndex) -> None:
    await index.apply(
        [
            Record(False, "a", _object("a", 10, "validating")),
            Record(True, "a", _object("a", 10, "in_progress")),
            Record(True, "a", _object("a", 10, "completed")),
        ]
    )
    row = index.get("a")
    assert row is not None
    assert orjson.loads(row.status or b"")["status"] == "completed"
    assert orjson.loads(row.manifest or b"")["status"] == "validating"
    assert index.get("b") is None


async def test_pages_run_newest_first_by_created_at_then_id(index: StatusIndex) -> None:
    stamps = {"a": 30, "b": 10, "c": 20, "d": 20, "e": 40}
    await index.apply([Record(True, key, _object(key, at)) for key, at in stamps.items()])
    assert [row.batch_id for row in index.newest(10)] == ["e", "a", "d", "c", "b"]
    assert [row.batch_id for row in index.newest(2)] == ["e", "a"]
    assert [row.batch_id for row in index.newest(2, (20, "d"))] == ["c", "b"]
    assert index.listed_at("d") == 20
    assert index.listed_at("nope") is None


async def test_a_manifest_alone_is_listed_and_its_status_takes_its_place(
    index: StatusIndex,
) -> None:
    await index.apply([Record(False, "a", _object("a", 5)), Record(False, "b", _object("b", 7))])
    assert [row.batch_id for row in index.newest(10)] == ["b", "a"]
    await index.apply([Record(True, "a", _object("a", 9))])
    assert [row.batch_id for row in index.newest(10)] == ["a", "b"]


async def test_tombstones_forget_a_batch_once_both_records_are_gone(index: StatusIndex) -> None:
    await index.apply([Record(False, "a", _object("a", 5)), Record(True, "a", _object("a", 5))])
    await index.apply([Record(True, "a", None)])
    row = index.get("a")
    assert row is not None
    assert (row.status, row.manifest is not None) == (None, True)  # validating again
    await index.apply([Record(False, "a", None)])
    assert index.get("a") is None
    assert index.newest(10) == []
    assert index.batch_ids() == []


async def test_a_record_without_an_integer_created_at_is_kept_but_not_listed(
    index: StatusIndex,
) -> None:
    await index.apply(
        [
            Record(True, "junk", b"not json"),
            Record(True, "odd", orjson.dumps({"created_at": "yesterday"})),
            Record(True, "list", b"[1, 2]"),
            Record(True, "ok", _object("ok", 1)),
        ]
    )
    assert [row.batch_id for row in index.newest(10)] == ["ok"]
    assert index.get("junk") is not None
    assert index.listed_at("junk") is None


def test_created_at_refuses_what_is_not_an_integer() -> None:
    assert created_at(_object("a", 12)) == 12
    assert created_at(orjson.dumps({"created_at": True})) is None
    assert created_at(orjson.dumps({"created_at": 1.5})) is None
    assert created_at(b"\xff") is None


async def test_close_deletes_the_file(tmp_path: Path) -> None:
    index = StatusIndex(tmp_path)
    await index.apply([Record(True, "a", _object("a", 1))])
    assert len(list(tmp_path.iterdir())) == 1
    index.close()
    assert list(tmp_path.iterdir()) == []


def _of(batch_id: str, created: int, project: str | None) -> bytes:
    fields = {"id": batch_id, "created_at": created, "status": "completed"}
    return orjson.dumps(fields if project is None else {**fields, "project": project})


async def test_a_project_pages_through_its_own_batches_only(index: StatusIndex) -> None:
    await index.apply(
        [
            Record(True, "s1", _of("s1", 10, "search")),
            Record(True, "a1", _of("a1", 20, "ads")),
            Record(False, "s2", _of("s2", 30, "search")),  # a manifest alone
            Record(True, "d1", _of("d1", 40, None)),  # names none: the default project's
            Record(True, "x1", _of("x1", 50, "not a project")),  # no project id: default's
        ]
    )
    assert [row.batch_id for row in index.newest(10, project="search")] == ["s2", "s1"]
    assert [row.batch_id for row in index.newest(1, (30, "s2"), "search")] == ["s1"]
    assert [row.batch_id for row in index.newest(10, project="default")] == ["x1", "d1"]
    assert [row.batch_id for row in index.newest(10)] == ["x1", "d1", "s2", "a1", "s1"]
    assert index.listed_at("a1", "search") is None  # another project's is not a place
    assert index.listed_at("a1", "ads") == 20
    plan = index._reader.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM batches WHERE project = ? AND created_at IS NOT NULL"
        " ORDER BY created_at DESC, id DESC LIMIT 5",
        ("search",),
    ).fetchall()
    assert "project_newest_first" in str(plan)  # one range of the index, no other project read
