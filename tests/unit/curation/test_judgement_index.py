"""The gateway's judgements on disk: the later judgement of a line wins, a tombstone deletes
its line, pages are ranges by custom_id, and what is held is rows on disk, not objects in
memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_stream.contracts import Judgement
from llm_stream.curation.judgement_index import INDEX_FILE, JudgementIndex, Record, line_of


def _record(batch_id: str, custom_id: str, verdict: str, at: float) -> Record:
    judged = Judgement(batch_id=batch_id, custom_id=custom_id, verdict=verdict, judged_at=at)  # type: ignore[arg-type]
    return Record(judged.key, judged.model_dump_json().encode())


def _tombstone(batch_id: str, custom_id: str) -> Record:
    return Record(f"{batch_id}/{custom_id}".encode(), None)


@pytest.fixture
def index(tmp_path: Path) -> JudgementIndex:
    return JudgementIndex(tmp_path / "root")


async def test_the_later_judgement_of_a_line_wins(index: JudgementIndex) -> None:
    await index.apply(
        [
            _record("batch_a", "c1", "accepted", 2),
            _record("batch_a", "c1", "rejected", 1),  # older, read later: kept out
            _record("batch_a", "c2", "rejected", 1),
            _record("batch_a", "c2", "gold", 1),  # a tie: the later record
            _record("batch_b", "c1", "gold", 1),
            Record(b"batch_a/c3", b"not a judgement"),
        ]
    )
    assert [(j.custom_id, j.verdict) for j in index.of_batch("batch_a")] == [
        ("c1", "accepted"),
        ("c2", "gold"),
    ]
    found = index.of_lines("batch_a", ["c2", "c3", "c2"])
    assert {key: j.verdict for key, j in found.items()} == {"c2": "gold"}
    assert index.count() == 3
    index.close()


async def test_a_tombstone_deletes_its_line(index: JudgementIndex) -> None:
    await index.apply([_record("batch_a", "c/1", "gold", 1), _record("batch_a", "c2", "gold", 1)])
    await index.apply([_tombstone("batch_a", "c/1"), Record(None, None), Record(b"junk", None)])
    assert [j.custom_id for j in index.of_batch("batch_a")] == ["c2"]
    await index.apply([_tombstone("batch_a", "c2")])
    assert index.count() == 0
    index.close()


async def test_a_batch_is_read_a_page_at_a_time(index: JudgementIndex) -> None:
    await index.apply([_record("batch_p", f"c{n}", "gold", 1) for n in range(7)])
    first = index.of_batch("batch_p", limit=3)
    assert [j.custom_id for j in first] == ["c0", "c1", "c2"]
    rest = index.of_batch("batch_p", after=first[-1].custom_id)
    assert [j.custom_id for j in rest] == ["c3", "c4", "c5", "c6"]
    many = [f"x{n}" for n in range(1200)]  # more ids than one query binds
    await index.apply([_record("batch_p", one, "accepted", 1) for one in many])
    assert len(index.of_lines("batch_p", many)) == 1200
    index.close()


async def test_the_index_is_a_file_deleted_on_close(tmp_path: Path) -> None:
    index = JudgementIndex(tmp_path / "root")
    await index.apply([_record("batch_a", "c1", "gold", 1)])
    files = list((tmp_path / "root").rglob(INDEX_FILE))
    assert len(files) == 1
    assert files[0].stat().st_size > 0
    index.close()
    assert not list((tmp_path / "root").rglob(INDEX_FILE))


def test_a_key_names_its_line() -> None:
    assert line_of(b"batch_a/c/1") == ("batch_a", "c/1")
    assert line_of(b"batch_a") is None
    assert line_of(b"/c1") is None
    assert line_of(None) is None


async def test_records_that_are_no_judgement_are_passed_over(index: JudgementIndex) -> None:
    await index.apply(
        [
            Record(b"\xff\xfe/\x00", b"not json"),
            Record(None, b'{"batch_id": "batch_a"}'),  # JSON, but no judgement
            Record(b"batch_a/c1", b"\xff" * 10_000),
            Record(b"\xff/\xfe", None),  # a tombstone of a key no judgement has
            _record("batch_a", "c1", "accepted", 1),
        ]
    )
    assert [(j.custom_id, j.verdict) for j in index.of_batch("batch_a")] == [("c1", "accepted")]
    assert index.count() == 1
    index.close()
