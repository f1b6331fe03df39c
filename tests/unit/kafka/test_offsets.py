from __future__ import annotations

from llm_stream.kafka.offsets import OffsetTracker

P0 = ("requests", 0)
P1 = ("requests", 1)


def test_nothing_is_committable_before_anything_finishes() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.assign(P1)
    for offset in range(3):
        tracker.start(P0, offset)
    assert tracker.committable() == {}


def test_only_the_contiguous_finished_prefix_is_committed() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.assign(P1)
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


def test_records_of_partitions_not_assigned_are_refused() -> None:
    tracker = OffsetTracker()
    assert not tracker.start(P0, 0)
    tracker.assign(P0)
    assert tracker.start(P0, 0)
    tracker.forget([P0])
    tracker.finish(P0, 0)  # late work of a revoked partition
    assert tracker.committable() == {}
    assert not tracker.start(P0, 1)


def test_a_reassigned_partition_starts_clean() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.start(P0, 5)
    tracker.assign(P0)  # revoked and assigned again: the old in-flight record is not ours
    tracker.start(P0, 3)
    tracker.finish(P0, 5)
    assert tracker.committable() == {}
    assert tracker.holds(P0)
    tracker.finish(P0, 3)
    assert tracker.committable() == {P0: 4}
    assert not tracker.holds(P0)


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.assign(P1)
    tracker.start(P0, 0)
    tracker.start(P1, 7)
    tracker.finish(P1, 7)
    assert tracker.committable() == {P1: 8}
    assert tracker.in_flight() == 1


def test_forgotten_partitions_ignore_late_finishes() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.assign(P1)
    tracker.start(P0, 5)
    tracker.forget([P0])
    tracker.finish(P0, 5)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0
