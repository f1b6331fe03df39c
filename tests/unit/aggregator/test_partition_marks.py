"""The results partitions' side of the aggregator: how far each was read, which are owned, and
so the commit point: never past the first result of the earliest open batch in a partition."""

from __future__ import annotations

from prometheus_client import REGISTRY

from llm_stream.aggregator.open_batch import OpenBatch
from llm_stream.aggregator.partition_marks import (
    PartitionMarks,
    committable_offsets,
    spread_of_release,
)
from llm_stream.protocols import IncomingRecord

P0, P1, P2, P3 = (("results", number) for number in range(4))


def _open(**first_offsets: int) -> OpenBatch:
    """An open batch whose first results are at ``p<n>=offset``."""
    return OpenBatch(
        first_offsets={("results", int(name[1:])): at for name, at in first_offsets.items()}
    )


def _records(*where: tuple[int, int]) -> list[IncomingRecord]:
    return [IncomingRecord("results", partition, offset, b"{}") for partition, offset in where]


def _revoked_total() -> float:
    return REGISTRY.get_sample_value("llm_stream_aggregator_results_revoked_total") or 0.0


def test_the_high_water_mark_is_past_the_furthest_record_read() -> None:
    marks = PartitionMarks()
    marks.read(P0, 7)
    marks.read(P0, 3)  # a re-read of an earlier record moves nothing back
    marks.read(P1, 0)
    assert marks.committable([]) == {P0: 8, P1: 1}


def test_a_partition_commits_no_further_than_its_earliest_open_batch() -> None:
    high_water = {P0: 100, P1: 50}
    batches = [_open(p0=40, p1=45), _open(p0=20), _open(p2=5)]
    assert committable_offsets(high_water, batches) == {P0: 20, P1: 45}  # p2 was not read here


def test_before_any_assignment_every_record_is_owned() -> None:
    records = _records((0, 0), (1, 0))
    assert PartitionMarks().owned(records, {}) is records


def test_records_of_partitions_not_assigned_here_are_dropped_and_counted() -> None:
    marks = PartitionMarks()
    marks.assign([P0])
    before = _revoked_total()
    kept = marks.owned(_records((0, 0), (1, 0), (0, 1)), marks.releases())
    assert [(record.partition, record.offset) for record in kept] == [(0, 0), (0, 1)]
    assert _revoked_total() - before == 1


def test_a_poll_taken_before_a_release_is_stale_even_once_assigned_back() -> None:
    marks = PartitionMarks()
    marks.assign([P0, P1])
    polled = marks.releases()
    marks.release({P0}, {})
    marks.assign([P0])  # back here: re-read from its commit, not from the stale poll
    stale = marks.owned(_records((0, 5), (1, 5)), polled)
    assert [record.partition for record in stale] == [1]
    fresh = marks.owned(_records((0, 5)), marks.releases())
    assert [record.partition for record in fresh] == [0]


def test_a_release_spreads_through_the_open_batches_it_drops() -> None:
    batches = {"a": _open(p0=1, p1=2), "b": _open(p1=3, p2=4), "c": _open(p3=0)}
    assert spread_of_release({P0}, batches) == ({P0, P1, P2}, {"a", "b"})
    assert spread_of_release({P3}, batches) == ({P3}, {"c"})
    assert spread_of_release({P0}, {}) == ({P0}, set())


def test_a_release_forgets_how_far_its_partitions_were_read() -> None:
    marks = PartitionMarks()
    marks.assign([P0, P1, P2, P3])
    for partition in (P0, P1, P2, P3):
        marks.read(partition, 9)
    released, dropped = marks.release({P0}, {"a": _open(p0=1, p2=2)})
    assert (released, dropped) == ({P0, P2}, {"a"})
    assert marks.committable([]) == {P1: 10, P3: 10}
    assert marks.owned(_records((0, 0), (1, 0), (2, 0)), marks.releases()) == _records(
        (1, 0), (2, 0)
    )
