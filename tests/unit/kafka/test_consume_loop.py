"""The consume loop against a fake consumer: rebalances, fetch errors, back-pressure, stalls.

The pipeline and engine are real (the fake engine), the consumer is a fake that can revoke
partitions, fail a fetch after draining another partition, and checks that commits only go
to partitions it has assigned, as a broker would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition

from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.settings import Settings
from llm_stream.worker.core import RequestPipeline
from tests.fakes import FakeEngine, FakePublisher

TOPIC = "requests"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def _line(partition: int, offset: int, prompt: str) -> bytes:
    return orjson.dumps(
        {
            "batch_id": "b1",
            "custom_id": f"c{partition}-{offset}",
            "url": "/v1/completions",
            "body": {"prompt": prompt},
        }
    )


class FakeConsumer:
    """Partition logs in memory, positions, pause, seek and group commits."""

    def __init__(self, logs: dict[TopicPartition, list[bytes]]) -> None:
        self.logs = logs
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.group_committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.listener: Any = None
        self.fail_next_fetch_after: TopicPartition | None = None
        #: Set: ``committed`` waits for it, as a broker's answer takes a while, while the
        #: loop goes on fetching (aiokafka runs the rebalance listener beside ``getmany``).
        self.committed_gate: asyncio.Event | None = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self.assigned |= set(partitions)
        for tp in partitions:
            self.positions[tp] = self.group_committed.get(tp, 0)
        await self.listener.on_partitions_assigned(partitions)

    async def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        await self.listener.on_partitions_revoked(partitions)
        self.assigned -= set(partitions)

    async def committed(self, tp: TopicPartition) -> int | None:
        if self.committed_gate is not None:
            await self.committed_gate.wait()
        return self.group_committed.get(tp)

    async def offsets_for_times(
        self, stamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        """Records are stamped with their offset (ms), as if written one a millisecond."""
        return {
            tp: SimpleNamespace(offset=ms) if ms < len(self.logs[tp]) else None
            for tp, ms in stamps.items()
        }

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs[tp])

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.001)
        fetched: dict[TopicPartition, list[Any]] = {}
        for tp in sorted(self.assigned - self.paused):
            start = self.positions[tp]
            values = self.logs[tp][start : start + max_records]
            if not values:
                continue
            fetched[tp] = [
                SimpleNamespace(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=start + i,
                    value=value,
                    key=None,
                    headers=(),
                    timestamp=None,
                )
                for i, value in enumerate(values)
            ]
            self.positions[tp] = start + len(values)
            max_records -= len(values)
            if self.fail_next_fetch_after == tp:  # aiokafka drained tp, then another raised
                self.fail_next_fetch_after = None
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            if max_records <= 0:
                break
        return fetched

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        for tp in offsets:
            assert tp in self.assigned, f"commit for {tp}, which is not assigned"
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.commits.append(plain)
        self.group_committed.update(plain)


async def _loop(
    logs: dict[TopicPartition, list[bytes]],
    engine: FakeEngine,
    *,
    max_in_flight: int = 8,
    stall_timeout_s: float = 300,
) -> tuple[ConsumeLoop, FakeConsumer, RequestPipeline, FakePublisher]:
    consumer = FakeConsumer(logs)
    publisher = FakePublisher()
    pipeline = RequestPipeline(engine, publisher, max_in_flight=max_in_flight)
    settings = Settings(commit_interval_s=0.01, stall_timeout_s=stall_timeout_s)
    loop = ConsumeLoop(
        settings, TOPIC, "group", pipeline, max_records=max_in_flight, consumer=consumer
    )
    await loop.start()  # subscribes with the loop's rebalance listener
    return loop, consumer, pipeline, publisher


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_rebalance_never_commits_past_unfinished_work_nor_for_a_revoked_partition() -> None:
    logs = {
        P0: [_line(0, i, "slow" if i == 2 else "p") for i in range(6)],
        P1: [_line(1, i, "p") for i in range(4)],
    }
    engine = FakeEngine(delays={"slow": 0.5})
    loop, consumer, _, publisher = await _loop(logs, engine)
    await consumer.assign([P0, P1])
    running = asyncio.create_task(loop.run())
    await _until(lambda: consumer.group_committed.get(P1) == 4)
    await _until(lambda: consumer.group_committed.get(P0) == 2)
    # Offset 2 is still in the engine: P0 is revoked now, and its commit stays at 2.
    await consumer.revoke([P0])
    assert consumer.group_committed[P0] == 2
    commits_before = len(consumer.commits)
    await asyncio.sleep(0.7)  # the slow request finishes after the revoke
    assert all(P0 not in commit for commit in consumer.commits[commits_before:])
    assert consumer.group_committed[P0] == 2
    # Assigned again: tracking restarts from the committed offset, and every record is answered.
    await consumer.assign([P0])
    await _until(lambda: consumer.group_committed.get(P0) == 6)
    loop.stop_fetching()
    await running
    answered = {result.custom_id for result, _ in publisher.results}
    assert answered == {f"c0-{i}" for i in range(6)} | {f"c1-{i}" for i in range(4)}
    for commit in consumer.commits:
        for tp, offset in commit.items():
            assert offset <= len(logs[tp])


async def test_records_fetched_while_an_assignment_is_set_up_are_read_again() -> None:
    # Seen across hosts: a worker given a cut-off peer's partitions fetched their records while
    # its listener still awaited the committed offsets; the pipeline, not yet tracking them,
    # dropped them, and the partitions stalled with their records unanswered.
    logs = {P0: [_line(0, i, "p") for i in range(4)], P1: [_line(1, i, "p") for i in range(6)]}
    loop, consumer, _, publisher = await _loop(logs, FakeEngine())
    await consumer.assign([P0])
    running = asyncio.create_task(loop.run())
    await _until(lambda: consumer.group_committed.get(P0) == 4)
    consumer.committed_gate = asyncio.Event()
    assigning = asyncio.create_task(consumer.assign([P1]))
    await _until(lambda: consumer.positions.get(P1) == 6)  # fetched during the set-up
    consumer.committed_gate.set()
    await assigning
    await _until(lambda: consumer.group_committed.get(P1) == 6)
    loop.stop_fetching()
    await running
    assert sorted(result.custom_id for result, _ in publisher.results) == sorted(
        [f"c0-{i}" for i in range(4)] + [f"c1-{i}" for i in range(6)]
    )


async def test_records_drained_before_a_fetch_error_are_read_again() -> None:
    logs = {P0: [_line(0, i, "p") for i in range(3)], P1: [_line(1, i, "p") for i in range(3)]}
    loop, consumer, _, publisher = await _loop(logs, FakeEngine())
    await consumer.assign([P0, P1])
    consumer.fail_next_fetch_after = P0
    running = asyncio.create_task(loop.run())
    await _until(lambda: loop.problem() is not None and "UnicodeDecodeError" in loop.problem())
    await _until(lambda: consumer.group_committed.get(P0) == 3)
    await _until(lambda: consumer.group_committed.get(P1) == 3)
    assert loop.problem() is None
    loop.stop_fetching()
    await running
    assert sorted(result.custom_id for result, _ in publisher.results) == sorted(
        [f"c0-{i}" for i in range(3)] + [f"c1-{i}" for i in range(3)]
    )


async def test_a_full_pipeline_pauses_fetching_instead_of_blocking() -> None:
    logs = {P0: [_line(0, i, "slow") for i in range(6)]}
    engine = FakeEngine(delays={"slow": 0.3})
    loop, consumer, pipeline, _ = await _loop(logs, engine, max_in_flight=2)
    await consumer.assign([P0])
    running = asyncio.create_task(loop.run())
    await _until(lambda: P0 in consumer.paused)
    assert pipeline.in_flight == 2
    await _until(lambda: consumer.group_committed.get(P0) == 6)
    assert engine.max_running == 2
    loop.stop_fetching()
    await running


async def test_a_partition_whose_records_do_not_move_is_reported_stalled() -> None:
    logs = {P0: [_line(0, 0, "stuck")]}
    engine = FakeEngine(delays={"stuck": 60})
    loop, consumer, pipeline, _ = await _loop(logs, engine, stall_timeout_s=0.2)
    await consumer.assign([P0])
    running = asyncio.create_task(loop.run())
    await _until(lambda: pipeline.in_flight == 1)
    assert loop.problem() is None
    await asyncio.sleep(0.3)
    problem = loop.problem()
    assert problem is not None
    assert "requests[0]" in problem
    loop.stop_fetching()
    await running
    await pipeline.drain(grace_period=0)


async def test_a_failed_periodic_commit_is_retried_and_the_loop_goes_on() -> None:
    """A fenced member or a rebalance in progress fails a commit: the loop keeps consuming,
    counts the failure, and the same offsets go out once commits work again."""
    from aiokafka.errors import CommitFailedError
    from prometheus_client import REGISTRY

    logs = {P0: [_line(0, i, "p") for i in range(4)]}
    loop, consumer, _, publisher = await _loop(logs, FakeEngine())
    await consumer.assign([P0])
    real_commit = consumer.commit
    failures = 3

    async def failing_commit(offsets: dict[TopicPartition, Any]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise CommitFailedError("fenced by the group")
        await real_commit(offsets)

    consumer.commit = failing_commit  # type: ignore[method-assign]
    labels = {"group": "group", "error": "CommitFailedError"}
    before = REGISTRY.get_sample_value("llm_stream_commit_failures_total", labels) or 0.0
    running = asyncio.create_task(loop.run())
    await _until(lambda: consumer.group_committed.get(P0) == 4)
    assert not running.done()  # the failures did not end the loop
    after = REGISTRY.get_sample_value("llm_stream_commit_failures_total", labels) or 0.0
    assert after - before == 3
    logs[P0].append(_line(0, 4, "p"))  # and it still consumes
    await _until(lambda: consumer.group_committed.get(P0) == 5)
    loop.stop_fetching()
    await running
    assert len(publisher.results) == 5


class _SpreadHandler:
    """A handler whose state for P0 spans P1 too: revoking P0 drops what it took of P1."""

    def __init__(self) -> None:
        self.taken: list[tuple[int, int]] = []

    def capacity(self) -> int:
        return 100

    async def handle(self, records: Any) -> None:
        self.taken += [(record.partition, record.offset) for record in records]

    def committable(self) -> dict[tuple[str, int], int]:
        return {(TOPIC, 1): 1}  # P1's first record is held by the spanning state

    async def assigned(self, partitions: Any) -> None: ...

    async def revoked(self, partitions: Any) -> set[tuple[str, int]]:
        return {(TOPIC, 0), (TOPIC, 1)}

    def holds(self, partition: Any) -> bool:
        return False


async def test_partitions_a_revoke_dropped_state_of_are_read_again_from_their_commit() -> None:
    consumer = FakeConsumer({P0: [b"x"] * 3, P1: [b"y"] * 3})
    handler = _SpreadHandler()
    loop = ConsumeLoop(
        Settings(commit_interval_s=0.01),
        TOPIC,
        "group",
        handler,
        max_records=100,
        consumer=consumer,
    )
    await loop.start()
    await consumer.assign([P0, P1])
    running = asyncio.create_task(loop.run())
    await _until(lambda: consumer.group_committed.get(P1) == 1)
    await consumer.revoke([P0])
    await _until(lambda: handler.taken.count((1, 1)) == 2)  # P1 from its commit, again
    loop.stop_fetching()
    await running
    assert handler.taken.count((1, 0)) == 1  # before the commit: not read again
    assert handler.taken.count((0, 0)) == 1  # the revoked partition: its new owner's


class _HoldingHandler:
    """Holds every record from offset 1 on (an open batch): only offset 1 is committable."""

    def __init__(self) -> None:
        self.taken: list[tuple[int, bytes]] = []
        self.revokes: list[list[Any]] = []
        self.assigns: list[dict[Any, int]] = []
        self.holds_from = 1

    def capacity(self) -> int:
        return 100

    async def handle(self, records: Any) -> None:
        self.taken += [(record.offset, record.value) for record in records]

    def committable(self) -> dict[tuple[str, int], int]:
        return {(TOPIC, 0): self.holds_from}

    async def assigned(self, partitions: Any) -> None:
        self.assigns.append(dict(partitions))

    async def revoked(self, partitions: Any) -> set[tuple[str, int]]:
        self.revokes.append(list(partitions))
        return set()

    def holds(self, partition: Any) -> bool:
        return False


async def _holding_loop_past_its_commit() -> tuple[
    ConsumeLoop, FakeConsumer, _HoldingHandler, asyncio.Task[None]
]:
    """A running loop that has handed over all three records and committed up to offset 1."""
    consumer = FakeConsumer({P0: [b"a", b"b", b"c"]})
    handler = _HoldingHandler()
    loop = ConsumeLoop(
        Settings(commit_interval_s=0.01),
        TOPIC,
        "group",
        handler,
        max_records=100,
        consumer=consumer,
    )
    await loop.start()
    await consumer.assign([P0])
    running = asyncio.create_task(loop.run())
    await _until(lambda: len(handler.taken) == 3 and consumer.group_committed.get(P0) == 1)
    return loop, consumer, handler, running


async def test_a_reread_asked_for_reads_from_the_commit_records_written_below_the_position() -> (
    None
):
    loop, consumer, handler, running = await _holding_loop_past_its_commit()
    # A broker back from a stale log end writes at offsets this reader has passed.
    consumer.logs[P0][2] = b"lost-and-rewritten"
    await asyncio.sleep(0.05)
    assert (2, b"lost-and-rewritten") not in handler.taken  # never served at its position
    loop.reread()
    await _until(lambda: (2, b"lost-and-rewritten") in handler.taken)
    loop.stop_fetching()
    await running
    assert handler.revokes == [[(TOPIC, 0)]]  # the handler forgot the partition first
    assert handler.assigns[-1] == {(TOPIC, 0): 1}  # and took it again from its commit
    assert handler.taken.count((0, b"a")) == 1  # before the commit: not read again
    assert handler.taken.count((1, b"b")) == 2


async def test_a_reread_since_a_time_goes_below_the_commit_and_never_commits_backwards() -> None:
    loop, consumer, handler, running = await _holding_loop_past_its_commit()
    consumer.logs[P0][0] = b"rewritten-below-the-commit"
    handler.holds_from = 0  # what it re-read from there is held again
    loop.reread(since_ms=0)
    await _until(lambda: (0, b"rewritten-below-the-commit") in handler.taken)
    await asyncio.sleep(0.05)  # commits go on meanwhile
    loop.stop_fetching()
    await running
    assert handler.assigns[-1] == {(TOPIC, 0): 0}
    assert all(commit[P0] >= 1 for commit in consumer.commits)  # never back below the commit
