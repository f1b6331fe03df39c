from __future__ import annotations

from service.offsets import OffsetTracker

P0 = ("requests", 0)
P1 = ("requests", 1)


def test_nothing_is_committable_before_anything_finishes() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.start(P0, offset)
    assert tracker.committable() == {}


def test_only_the_contiguous_finished_prefix_is_committed() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.start(P0, offset)
    tracker.finish(P0, 12)
    tracker.finish(P0, 14)
    assert tracker.committable() == {P0: 10}  # 10 still in flight: commit nothing past it
    tracker.finish(P0, 10)
    assert tracker.committable() == {P0: 11}
    tracker.finish(P0, 11)
    assert tracker.committable() == {P0: 13}
    tracker.finish(P0, 13)
    assert tracker.committable() == {P0: 15}


def test_committed_offsets_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 0)
    tracker.finish(P0, 0)
    offsets = tracker.committable()
    tracker.mark_committed(offsets)
    assert tracker.committable() == {}
    tracker.start(P0, 1)
    assert tracker.committable() == {}  # offset 1 in flight: the commit point stays at 1
    tracker.finish(P0, 1)
    assert tracker.committable() == {P0: 2}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 0)
    tracker.start(P1, 7)
    tracker.finish(P1, 7)
    assert tracker.committable() == {P1: 8}
    assert tracker.in_flight() == 1


def test_forgotten_partitions_ignore_late_finishes() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 5)
    tracker.forget([P0])
    tracker.finish(P0, 5)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0
