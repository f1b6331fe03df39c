"""The waiting queue's order (priority, FIFO within one, aging) and its bounds."""

from __future__ import annotations

from llm_stream.contracts import PRIORITY_HEADER
from llm_stream.protocols import IncomingRecord
from llm_stream.worker.waiting import WaitingQueue


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(
    offset: int, priority: int | None = None, size: int = 10, partition: int = 0
) -> IncomingRecord:
    headers = {} if priority is None else {PRIORITY_HEADER: str(priority)}
    return IncomingRecord("requests", partition, offset, b"x" * size, None, headers)


def _drain(queue: WaitingQueue) -> list[int]:
    return [queue.pop().offset for _ in range(len(queue))]


def test_more_urgent_first_and_fifo_within_a_priority() -> None:
    queue = WaitingQueue(max_records=100, max_bytes=10_000, clock=_Clock())
    for offset, priority in enumerate([5, 5, None, 5, -1, 0, -1]):
        queue.push(_record(offset, priority))
    assert _drain(queue) == [4, 6, 2, 5, 0, 1, 3]


def test_an_urgent_record_behind_ten_thousand_overtakes_them_all() -> None:
    clock = _Clock()
    queue = WaitingQueue(max_records=20_000, max_bytes=10**9, clock=clock)
    for offset in range(10_000):
        queue.push(_record(offset, 10))
        clock.now += 0.001  # ten seconds of arrivals: well inside 10 levels x 60 s
    queue.push(_record(10_000, 0))
    assert queue.pop().offset == 10_000
    assert _drain(queue) == list(range(10_000))


def test_aging_a_waiting_record_is_not_overtaken_forever() -> None:
    clock = _Clock()
    queue = WaitingQueue(max_records=100, max_bytes=10_000, aging_s=60, clock=clock)
    queue.push(_record(0, 1))
    clock.now += 59
    queue.push(_record(1, 0))  # one level more urgent, 59 s later: goes first
    clock.now += 2
    queue.push(_record(2, 0))  # 61 s later: the old record has waited long enough
    assert _drain(queue) == [1, 0, 2]


def test_strict_priority_lets_a_steady_stream_overtake_forever() -> None:
    clock = _Clock()
    queue = WaitingQueue(max_records=100, max_bytes=10_000, aging_s=None, clock=clock)
    queue.push(_record(0, 1))
    clock.now += 10**6
    queue.push(_record(1, 0))
    assert _drain(queue) == [1, 0]


def test_room_is_bounded_by_records_and_by_bytes() -> None:
    queue = WaitingQueue(max_records=3, max_bytes=25, clock=_Clock())
    assert queue.room() == 3
    queue.push(_record(0, size=10))
    assert queue.room() == 2
    queue.push(_record(1, size=10))
    assert queue.room() == 1
    queue.push(_record(2, size=10))
    assert (queue.room(), queue.bytes) == (0, 30)
    queue.pop()
    assert (queue.room(), queue.bytes) == (1, 20)
    assert WaitingQueue(max_records=0, max_bytes=0).room() == 0


def test_dropping_partitions_keeps_the_rest_in_order() -> None:
    queue = WaitingQueue(max_records=100, max_bytes=10_000, clock=_Clock())
    for offset in range(6):
        queue.push(_record(offset, priority=offset % 2, partition=offset % 3))
    assert queue.drop({("requests", 1)}) == 2
    assert queue.bytes == 40
    assert _drain(queue) == [0, 2, 3, 5]
