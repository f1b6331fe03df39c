"""The aggregator's commit point against a commit at every await of its work.

The periodic commit and the rebalance commit read ``committable()`` without the aggregator's
lock, so any await inside ``add_results`` (a store check in a thread, an S3 HEAD on S3, a status
publish, a file write) is a moment a commit can happen. Here every such await point commits,
as the consume loop would, and each commit is checked: no offset committed past a valid result
whose batch is not yet written (after a restart that line would never be read again). Then a
fresh aggregator restarts from the last commit and must write every batch whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llm_stream.aggregator import app
from llm_stream.aggregator.core import BatchAggregator
from llm_stream.contracts import BatchObject
from llm_stream.files.store import LocalFileStore
from llm_stream.protocols import IncomingRecord, TopicPartitionKey
from tests.unit.aggregator.conftest import Make
from tests.unit.aggregator.test_core import TOPIC, _manifest, _result

T = TypeVar("T")
P0: TopicPartitionKey = (TOPIC, 0)

#: Partition 0 of the results topic: (batch, custom_id) per offset. Batches a and b finish
#: while c, d and e are still open; the last poll brings b's second line.
LOG = [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1"), ("a", "3"), ("d", "1"), ("b", "2")]
SIZES = {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1}


class CommitAtEveryAwait:
    """A consumer group's commits, made at every await point of the aggregator's work."""

    def __init__(self, store: LocalFileStore, records: list[IncomingRecord]) -> None:
        self.store = store
        self.records = records
        self.aggregator: BatchAggregator | None = None
        self.committed = 0
        self.commits = 0
        self.unsafe: list[str] = []

    def commit(self, where: str) -> None:
        if self.aggregator is None:
            return
        offset = self.aggregator.committable().get(P0, self.committed)
        self.commits += 1
        for record in self.records[:offset]:
            batch_id = json.loads(record.value or b"{}")["batch_id"]
            if not self.store.is_written(batch_id):
                self.unsafe.append(f"commit {offset} at {where}: {batch_id}@{record.offset}")
        self.committed = max(self.committed, offset)

    async def to_thread(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        self.commit(getattr(function, "__name__", repr(function)))
        await asyncio.sleep(0)  # the thread's hop: other tasks run here
        return function(*args, **kwargs)


class CommittingStatus:
    def __init__(self, group: CommitAtEveryAwait) -> None:
        self.group = group
        self.published: list[BatchObject] = []

    async def publish_status(self, batch: BatchObject) -> None:
        self.group.commit(f"publish {batch.id} {batch.status}")
        await asyncio.sleep(0)
        self.published.append(batch)


def _log_records() -> list[IncomingRecord]:
    return [
        IncomingRecord(TOPIC, 0, offset, _result(batch_id, custom_id))
        for offset, (batch_id, custom_id) in enumerate(LOG)
    ]


@pytest.mark.parametrize("poll_size", [1, 2, 3, len(LOG)])
async def test_no_commit_at_any_await_passes_an_unwritten_result(
    tmp_path: Path, make: Make, monkeypatch: pytest.MonkeyPatch, poll_size: int
) -> None:
    records = _log_records()
    store = LocalFileStore(tmp_path)
    group = CommitAtEveryAwait(store, records)
    monkeypatch.setattr(asyncio, "to_thread", group.to_thread)
    aggregator = make(tmp_path, CommittingStatus(group))  # type: ignore[arg-type]
    group.aggregator = aggregator
    for batch_id in "ab":
        await aggregator.add_manifests([_manifest(batch_id, SIZES[batch_id])])
    for start in range(0, len(records), poll_size):
        await aggregator.add_results(records[start : start + poll_size])
        group.commit("after the poll")
    assert {batch for batch in "abcd" if store.is_written(batch)} == {"a", "b"}
    assert group.commits > len(records)  # store checks, publishes and writes all committed
    assert group.unsafe == []
    assert group.committed == 3  # c's first result: the earliest unwritten batch
    aggregator.close()

    # A restart reads from the last commit: every batch is still written whole.
    monkeypatch.undo()
    again = make(tmp_path, CommittingStatus(group))  # type: ignore[arg-type]
    for batch_id in "cd":
        await again.add_manifests([_manifest(batch_id, SIZES[batch_id])])
    await again.add_results(records[group.committed :])
    await again.add_results([IncomingRecord(TOPIC, 0, len(LOG), _result("c", "2"))])
    for batch_id, size in SIZES.items():
        if batch_id != "e":
            lines = (tmp_path / batch_id / "output.jsonl").read_bytes().splitlines()
            assert len(lines) == size, batch_id


async def test_results_of_a_partition_revoked_mid_poll_are_not_spooled(
    tmp_path: Path, make: Make
) -> None:
    """A poll is spooled in steps; a revoke between two steps drops the rest of the poll,
    so nothing of the partition stays open here (its next owner reads it)."""
    aggregator = make(tmp_path, CommittingStatus(CommitAtEveryAwait(LocalFileStore(tmp_path), [])))
    handler = app._ResultsHandler(aggregator)
    await handler.assigned({P0: 0, (TOPIC, 1): 0})
    poll = [IncomingRecord(TOPIC, 0, offset, _result("big", str(offset))) for offset in range(600)]
    poll.append(IncomingRecord(TOPIC, 1, 0, _result("other", "x")))
    revoked = asyncio.Event()

    async def revoke_after_the_first_step() -> None:
        while aggregator.received("big") == 0:  # noqa: ASYNC110 (the step is the event)
            await asyncio.sleep(0)
        assert await handler.revoked([P0]) == set()
        revoked.set()

    revoking = asyncio.create_task(revoke_after_the_first_step())
    await handler.handle(poll)
    await revoking
    assert revoked.is_set()
    assert aggregator.received("big") == 0  # dropped on the revoke, not spooled again
    assert aggregator.received("other") == 1  # a partition still owned is taken
    assert P0 not in aggregator.committable()
    assert aggregator.committable() == {(TOPIC, 1): 0}


async def test_a_poll_revoked_and_assigned_back_mid_way_is_read_again_whole(
    tmp_path: Path, make: Make
) -> None:
    """The usual rebalance revokes every partition and assigns them again: the rest of the
    poll in hand is stale (the loop re-reads the partition from its commit), so it must not be
    spooled, or the batch would hold its first offset past rows that are only in the spool."""
    aggregator = make(tmp_path, CommittingStatus(CommitAtEveryAwait(LocalFileStore(tmp_path), [])))
    await aggregator.add_manifests([_manifest("big", 1000)])
    handler = app._ResultsHandler(aggregator)
    await handler.assigned({P0: 0})
    poll = [IncomingRecord(TOPIC, 0, offset, _result("big", str(offset))) for offset in range(600)]

    async def rebalance_after_the_first_step() -> None:
        while aggregator.received("big") == 0:  # noqa: ASYNC110 (the step is the event)
            await asyncio.sleep(0)
        await handler.revoked([P0])
        await handler.assigned({P0: 0})

    rebalancing = asyncio.create_task(rebalance_after_the_first_step())
    await handler.handle(poll)
    await rebalancing
    assert aggregator.received("big") == 0  # the stale rest of the poll was refused
    await handler.handle(poll)  # the loop reads the partition again from its commit
    assert aggregator.received("big") == 600
    assert aggregator.committable() == {P0: 0}
