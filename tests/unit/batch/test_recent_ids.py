"""Recent batch ids: remembered in the order added, the oldest forgotten past the limit, so the
set follows recent history, never all of it."""

from __future__ import annotations

from llm_stream.batch.recent_ids import RECENT_BATCHES, RecentIds


def test_an_id_is_remembered_once() -> None:
    ids = RecentIds()
    assert ids.add("b1") is True
    assert ids.add("b1") is False  # already known: nothing new learnt
    assert "b1" in ids
    assert len(ids) == 1


def test_past_the_limit_the_oldest_ids_are_forgotten() -> None:
    ids = RecentIds(limit=3)
    for batch_id in ("b1", "b2", "b3", "b4", "b5"):
        ids.add(batch_id)
    assert ids.ids() == {"b3", "b4", "b5"}
    assert "b1" not in ids
    assert ids.add("b1") is True  # forgotten: learnt again, and the oldest left goes
    assert ids.ids() == {"b4", "b5", "b1"}


def test_adding_a_known_id_again_does_not_make_it_recent() -> None:
    """Order is first insertion: a repeat neither refreshes an id nor evicts another."""
    ids = RecentIds(limit=2)
    ids.add("b1")
    ids.add("b2")
    ids.add("b1")
    ids.add("b3")
    assert ids.ids() == {"b2", "b3"}


def test_a_discarded_id_is_forgotten_and_discarding_an_unknown_one_is_harmless() -> None:
    ids = RecentIds()
    ids.add("b1")
    ids.discard("b1")
    ids.discard("never-added")
    assert "b1" not in ids
    assert len(ids) == 0


def test_the_default_bound_is_the_documented_ten_thousand() -> None:
    ids = RecentIds()
    for number in range(RECENT_BATCHES + 10):
        ids.add(f"b{number}")
    assert RECENT_BATCHES == 10_000
    assert len(ids) == RECENT_BATCHES
    assert "b9" not in ids
    assert "b10" in ids
