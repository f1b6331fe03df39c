from __future__ import annotations

from llm_stream.kafka.live_workers import LiveWorkers
from llm_stream.protocols import IncomingRecord
from tests.unit.kafka.announcements import Clock, announcement


def test_a_worker_counts_until_its_last_heartbeat_expires() -> None:
    clock = Clock()
    live = LiveWorkers(clock)
    live.add([announcement("w1", ["small"], 1000), announcement("w2", ["large", "big"], 995)])
    assert sorted(live.models()) == ["big", "large", "small"]
    clock.now = 1016  # w2's heartbeat is 21 s old
    assert sorted(live.models()) == ["small"]
    assert live.serves("small")
    assert not live.serves("large")
    live.add([announcement("w2", ["large"], 1016)])  # back again
    assert live.serves("large")


def test_a_tombstone_withdraws_a_worker_at_once() -> None:
    live = LiveWorkers(Clock())
    live.add([announcement("w1", ["small"], 1000)])
    live.add([IncomingRecord("workers", 0, 1, None, b"w1")])
    assert live.workers() == []


def test_a_later_announcement_replaces_the_workers_last() -> None:
    live = LiveWorkers(Clock())
    live.add([announcement("w1", ["small"], 999), announcement("w1", ["other"], 1000)])
    assert [worker.models for worker in live.workers()] == [["other"]]


def test_records_that_are_no_announcement_are_counted_and_skipped() -> None:
    live = LiveWorkers(Clock())
    garbage = [
        IncomingRecord("workers", 0, n, value, b"k")
        for n, value in enumerate([b"", b"not json", b'{"worker_id": "w"}', b"\xff\xfe"])
    ]
    live.add([*garbage, announcement("w1", ["small"], 1000)])
    assert live.unreadable == 4
    assert live.serves("small")


def test_state_holds_live_workers_only() -> None:
    clock = Clock()
    live = LiveWorkers(clock)
    live.add([announcement(f"w{n}", ["m"], 1000) for n in range(1000)])
    clock.now = 2000
    live.add([announcement("fresh", ["m"], 2000)])
    assert len(live._workers) == 1
