"""The pipeline with a waiting queue: urgent work first, expired work never run, and commits
that never pass an unanswered record however the starts and finishes interleave."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping

import orjson
import pytest

from llm_stream.contracts import DEADLINE_HEADER, PRIORITY_HEADER, ResultMessage
from llm_stream.engine.protocol import EngineReply, EngineRequest
from llm_stream.protocols import IncomingRecord
from llm_stream.worker.core import RequestPipeline
from llm_stream.worker.waiting import WaitingQueue
from tests.fakes import FakeEngine, FakePublisher

TOPIC = "requests"


def _record(
    offset: int, priority: int | None = None, deadline: float | None = None, partition: int = 0
) -> IncomingRecord:
    line = {
        "batch_id": "b1",
        "custom_id": f"c{offset}",
        "url": "/v1/completions",
        "body": {"prompt": f"p{offset}"},
    }
    headers = {} if priority is None else {PRIORITY_HEADER: str(priority)}
    if deadline is not None:
        headers[DEADLINE_HEADER] = repr(deadline)
    return IncomingRecord(TOPIC, partition, offset, orjson.dumps(line), None, headers)


async def _pipeline(
    engine: FakeEngine, publisher: FakePublisher, max_in_flight: int = 1
) -> RequestPipeline:
    waiting = WaitingQueue(max_records=100, max_bytes=1_000_000)
    pipeline = RequestPipeline(engine, publisher, max_in_flight=max_in_flight, waiting=waiting)
    await pipeline.assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    return pipeline


async def _finished(pipeline: RequestPipeline) -> None:
    """Wait until nothing is in flight or waiting (``drain`` would drop what waits)."""
    async with asyncio.timeout(10):
        while pipeline.holds((TOPIC, 0)) or pipeline.holds((TOPIC, 1)):  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _answered(publisher: FakePublisher) -> list[str]:
    return [result.custom_id for result, _ in publisher.results]


async def test_an_urgent_record_behind_a_batch_is_answered_before_it() -> None:
    engine, publisher = FakeEngine(), FakePublisher()
    pipeline = await _pipeline(engine, publisher)
    assert pipeline.capacity() == 101  # one for the engine, a hundred to wait
    await pipeline.handle([_record(offset, priority=10) for offset in range(50)])
    await pipeline.handle([_record(50, priority=-1)])
    await _finished(pipeline)
    answered = _answered(publisher)
    assert answered[:2] == ["c0", "c50"]  # c0 had started before c50 was fetched
    assert answered[2:] == [f"c{offset}" for offset in range(1, 50)]  # FIFO within a priority
    assert [request.priority for request in engine.seen[:2]] == [10, -1]
    assert pipeline.committable() == {(TOPIC, 0): 51}


async def test_a_request_past_its_deadline_is_answered_batch_expired_without_running() -> None:
    engine, publisher = FakeEngine(delays={"p0": 0.2}), FakePublisher()
    pipeline = await _pipeline(engine, publisher)
    now = time.time()
    await pipeline.handle(
        [
            _record(0),
            _record(1, deadline=now - 1),  # past already
            _record(2, deadline=now + 0.1),  # passes while it waits behind p0
            _record(3, deadline=now + 60),
        ]
    )
    await _finished(pipeline)
    by_id = {result.custom_id: result for result, _ in publisher.results}
    assert [request.body["prompt"] for request in engine.seen] == ["p0", "p3"]
    for custom_id in ("c1", "c2"):
        expired = by_id[custom_id]
        assert expired.response is None
        assert expired.error is not None
        assert expired.error.code == "batch_expired"
    assert by_id["c3"].response is not None
    assert pipeline.committable() == {(TOPIC, 0): 4}


async def test_revoked_waiting_records_never_run_and_drain_leaves_waiting_ones_uncommitted() -> (
    None
):
    engine, publisher = FakeEngine(delays={"p0": 0.1}), FakePublisher()
    pipeline = await _pipeline(engine, publisher)
    await pipeline.handle(
        [_record(0), _record(1), _record(2, partition=1), _record(3, partition=1)]
    )
    await pipeline.revoked([(TOPIC, 1)])
    assert await pipeline.drain(grace_period=5)  # all that started finished
    assert _answered(publisher) == ["c0"]
    assert pipeline.committable() == {(TOPIC, 0): 1}  # record 1 is re-read after a restart


class _Parking:
    """Engine and publisher in one: each request parks in the engine and again in publishing
    until the test lets it go, so the test decides every interleaving."""

    def __init__(self) -> None:
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.published: list[str] = []
        self.engine = _ParkingEngine(self)

    def gate(self, step: str, custom_id: str) -> asyncio.Event:
        return self.gates.setdefault((step, custom_id), asyncio.Event())

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        await self.gate("publish", result.custom_id).wait()
        self.published.append(result.custom_id)

    async def publish_dead_letter(self, *args: object) -> None:
        raise AssertionError("no dead letter expected")


class _ParkingEngine(FakeEngine):
    def __init__(self, parking: _Parking) -> None:
        super().__init__(concurrency=8)
        self._parking = parking

    async def serve(self, request: EngineRequest) -> EngineReply:
        await self._parking.gate("engine", "c" + request.body["prompt"][1:]).wait()
        return await super().serve(request)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _orders() -> list[tuple[tuple[str, str], ...]]:
    """Every order of the six steps of three requests (its engine step before its publish)."""
    steps = [(step, f"c{i}") for i in range(3) for step in ("engine", "publish")]
    return [
        order
        for order in itertools.permutations(steps)
        if all(order.index(("engine", c)) < order.index(("publish", c)) for _, c in order)
    ]


@pytest.mark.parametrize("max_in_flight", [1, 3])
async def test_no_interleaving_of_out_of_order_starts_commits_an_unanswered_record(
    max_in_flight: int,
) -> None:
    """Offsets 0, 1, 2 with priorities 5, 0, -5 start in the reverse order of their offsets;
    whatever order the engine and the publisher then let them go, the committable offset never
    passes a record whose result is not published."""
    orders = _orders()
    assert len(orders) == 90
    for order in orders:
        parking = _Parking()
        pipeline = RequestPipeline(
            parking.engine,
            parking,
            max_in_flight=max_in_flight,
            waiting=WaitingQueue(max_records=10, max_bytes=10_000),
        )
        await pipeline.assigned({(TOPIC, 0): 0})
        await pipeline.handle([_record(0, 5), _record(1, 0), _record(2, -5)])
        for step in order:
            parking.gate(*step).set()
            await _settle()
            committed = pipeline.committable().get((TOPIC, 0), 0)
            answered = set(parking.published)
            assert all(f"c{offset}" in answered for offset in range(committed)), (order, step)
        assert pipeline.committable() == {(TOPIC, 0): 3}
        if max_in_flight == 1:
            assert [request.body["prompt"] for request in parking.engine.seen] == ["p2", "p1", "p0"]
