"""The aggregator survives what a topic may carry: orphans, strangers' batches, failures."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

from llm_stream.aggregator.core import BatchAggregator
from llm_stream.contracts import BatchObject
from llm_stream.files.store import LocalFileStore
from llm_stream.ops import telemetry
from llm_stream.protocols import IncomingRecord
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.conftest import Make
from tests.unit.aggregator.test_core import (
    TOPIC,
    _manifest,
    _records,
    _result,
    invalid_results,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class FailingStatusPublisher(FakeStatusPublisher):
    """Refuses the final status of the batches in ``failing``."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    async def publish_status(self, batch: BatchObject) -> None:
        if batch.id in self.failing and batch.status != "in_progress":
            raise ConnectionError("broker unreachable")
        await super().publish_status(batch)


async def test_an_orphan_is_written_as_failed_after_the_timeout(tmp_path: Path, make: Make) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, orphan_timeout=60)
    await aggregator.add_results(
        _records([_result("orphan", "a"), _result("orphan", "b", status=500)], start=3)
    )
    await aggregator.add_results(_records([_result("later", "x")], start=5))
    first_at = aggregator._open["orphan"].in_progress_at
    aggregator._open["later"].in_progress_at = first_at + 30
    assert await aggregator.fail_orphans(now=first_at + 60) == []
    assert aggregator.committable() == {(TOPIC, 0): 3}

    assert await aggregator.fail_orphans(now=first_at + 61) == ["orphan"]
    batch = orjson.loads((tmp_path / "orphan" / "batch.json").read_bytes())
    assert batch["status"] == "failed"
    assert batch["failed_at"] is not None
    assert batch["completed_at"] is None
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    assert batch["errors"]["object"] == "list"
    assert batch["errors"]["data"][0]["code"] == "missing_manifest"
    assert batch["errors"]["data"][0]["line"] is None
    assert len((tmp_path / "orphan" / "output.jsonl").read_bytes().splitlines()) == 1
    assert len((tmp_path / "orphan" / "error.jsonl").read_bytes().splitlines()) == 1
    assert status.published[-1].status == "failed"
    assert aggregator.committable() == {(TOPIC, 0): 5}  # only "later" holds the partition
    await aggregator.add_manifests([_manifest("orphan", 2)])  # too late: changes nothing
    assert orjson.loads((tmp_path / "orphan" / "batch.json").read_bytes()) == batch


async def test_a_batch_with_its_manifest_is_never_an_orphan(tmp_path: Path, make: Make) -> None:
    aggregator = make(tmp_path, FakeStatusPublisher(), orphan_timeout=1)
    await aggregator.add_manifests([_manifest("known", 5)])
    await aggregator.add_results(_records([_result("known", "a")]))
    assert await aggregator.fail_orphans(now=aggregator._open["known"].in_progress_at + 10) == []
    assert aggregator.open_batches == 1


async def test_only_batches_this_aggregator_owns_are_expired(tmp_path: Path, make: Make) -> None:
    aggregator = make(tmp_path, FakeStatusPublisher())
    mine, theirs = _manifest("mine", 2), _manifest("theirs", 2)
    await aggregator.add_manifests([mine])
    await aggregator.add_manifests([theirs])
    expired = await aggregator.expire_overdue(
        now=mine.created_at + 86_400, owns=lambda batch_id: batch_id == "mine"
    )
    assert expired == ["mine"]
    assert orjson.loads((tmp_path / "mine" / "batch.json").read_bytes())["status"] == "expired"
    assert not (tmp_path / "theirs").exists()
    assert "theirs" in aggregator._manifests  # still waiting: its owner may be gone


async def test_a_stranger_batch_its_owner_wrote_is_forgotten(tmp_path: Path, make: Make) -> None:
    owner = make(tmp_path, FakeStatusPublisher())
    other = make(tmp_path, FakeStatusPublisher())
    manifest = _manifest("b1", 1)
    await owner.add_manifests([manifest])
    await other.add_manifests([manifest])
    await owner.add_results(_records([_result("b1", "a")]))
    assert await other.expire_overdue(now=manifest.created_at + 86_400, owns=lambda _: False) == []
    assert "b1" not in other._manifests


async def test_a_batch_written_by_another_aggregator_is_not_overwritten(
    tmp_path: Path, make: Make
) -> None:
    first, second_status = FakeStatusPublisher(), FakeStatusPublisher()
    winner, loser = make(tmp_path, first), make(tmp_path, second_status)
    manifest = _manifest("b1", 2)
    for aggregator in (winner, loser):
        await aggregator.add_manifests([manifest])
    # A bad rebalance: both read the partition; the loser has only half of the results.
    await loser.add_results(_records([_result("b1", "a")], start=7))
    await winner.add_results(_records([_result("b1", "a"), _result("b1", "b")], start=7))
    written = {
        name: (tmp_path / "b1" / name).read_bytes() for name in ("batch.json", "output.jsonl")
    }
    assert loser.committable() == {(TOPIC, 0): 7}

    assert await loser.expire_overdue(now=manifest.created_at + 86_400, owns=lambda _: True) == []
    assert {name: (tmp_path / "b1" / name).read_bytes() for name in written} == written
    assert [batch.status for batch in second_status.published] == ["in_progress"]
    assert loser.batches_written == 0
    assert loser.committable() == {(TOPIC, 0): 8}  # forgotten: it holds no commit any more
    await loser.add_results(_records([_result("b1", "b")], start=8))  # completes nothing
    assert {name: (tmp_path / "b1" / name).read_bytes() for name in written} == written


async def test_completing_a_batch_another_wrote_does_not_write_it_again(
    tmp_path: Path, make: Make
) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status)
    await aggregator.add_results(_records([_result("b1", "a")]))  # opened before it was written
    (tmp_path / "b1").mkdir()
    (tmp_path / "b1" / "batch.json").write_bytes(b'{"status": "completed"}')
    await aggregator.add_manifests([_manifest("b1", 1)])
    assert (tmp_path / "b1" / "batch.json").read_bytes() == b'{"status": "completed"}'
    assert not (tmp_path / "b1" / "output.jsonl").exists()
    assert status.published == []
    assert aggregator.open_batches == 0


class SlowStore(LocalFileStore):
    """Object storage stands in: each check is a blocking call, and notes its thread."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.checked_on: list[int] = []

    def is_written(self, batch_id: str) -> bool:
        self.checked_on.append(threading.get_ident())
        return super().is_written(batch_id)


async def test_the_store_is_never_asked_on_the_event_loop(tmp_path: Path) -> None:
    """An S3 check is an HTTP request: on the loop it would stall fetches and heartbeats."""
    store = SlowStore(tmp_path)
    aggregator = BatchAggregator(store, FakeStatusPublisher(), spool_root=tmp_path / "spool")
    try:
        (tmp_path / "done").mkdir()
        (tmp_path / "done" / "batch.json").write_bytes(b"{}")
        await aggregator.add_results(_records([_result("done", "a"), _result("b1", "a")]))
        await aggregator.add_manifests([_manifest("b1", 2)])
        await aggregator.add_manifests([_manifest("done", 1)])
        await aggregator.add_results(_records([_result("b1", "b")], start=2))
        await aggregator.expire_overdue(now=time.time() + 86_400 * 30, owns=lambda _: False)
    finally:
        aggregator.close()
    assert aggregator.batches_written == 1
    assert store.checked_on, "the store was never asked"
    assert threading.get_ident() not in store.checked_on


async def test_a_failed_status_publish_holds_commits_until_the_poll_is_re_read(
    tmp_path: Path, make: Make
) -> None:
    status = FailingStatusPublisher({"stuck"})
    aggregator = make(tmp_path, status)
    for batch_id in ("done", "stuck", "after"):
        await aggregator.add_manifests([_manifest(batch_id, 1)])
    poll = _records(
        [_result("done", "a"), _result("stuck", "a"), _result("after", "a"), b"junk"], start=20
    )
    with pytest.raises(ConnectionError):
        await aggregator.add_results(poll)
    assert (tmp_path / "done" / "batch.json").exists()
    assert not (tmp_path / "stuck" / "batch.json").exists()
    assert not (tmp_path / "after").exists()  # its rows were never spooled
    assert aggregator.committable() == {(TOPIC, 0): 21}  # not past "stuck" at 21 (nor "after")

    async with aggregator.lock:
        assert aggregator.release([(TOPIC, 0)]) == {(TOPIC, 0)}
    assert aggregator.committable() == {}
    assert aggregator.open_batches == 0
    status.failing.clear()
    await aggregator.add_results(poll)  # re-read from the committed offset
    assert (tmp_path / "stuck" / "batch.json").exists()
    assert (tmp_path / "after" / "batch.json").exists()
    assert aggregator.committable() == {(TOPIC, 0): 24}


async def test_a_failed_progress_publish_is_not_a_failed_poll(tmp_path: Path, make: Make) -> None:
    class NoProgress(FakeStatusPublisher):
        async def publish_status(self, batch: BatchObject) -> None:
            if batch.status == "in_progress":
                raise ConnectionError("broker unreachable")
            await super().publish_status(batch)

    aggregator = make(tmp_path, NoProgress(), progress_interval=0)
    await aggregator.add_manifests([_manifest("b1", 2)])
    await aggregator.add_results(_records([_result("b1", "a")]))
    await aggregator.add_results(_records([_result("b1", "b")], start=1))
    assert (tmp_path / "b1" / "batch.json").exists()


async def test_releasing_a_partition_releases_the_others_of_its_batches(
    tmp_path: Path, make: Make
) -> None:
    aggregator = make(tmp_path, FakeStatusPublisher())
    await aggregator.add_results(_records([_result("split", "a")], start=4, partition=0))
    await aggregator.add_results(_records([_result("split", "b")], start=9, partition=1))
    await aggregator.add_results(_records([_result("alone", "c")], start=2, partition=2))
    released = await aggregator.release_partitions([(TOPIC, 0)])
    assert released == {(TOPIC, 0), (TOPIC, 1)}
    assert aggregator.committable() == {(TOPIC, 2): 2}
    assert aggregator.received("split") == 0
    assert aggregator.received("alone") == 1


async def test_trace_links_are_kept_only_while_tracing_records(
    tmp_path: Path, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    aggregator = make(tmp_path, FakeStatusPublisher())
    # Tracing off (whatever provider an earlier test installed): spans do not record.
    monkeypatch.setattr(telemetry, "tracer", lambda: NoOpTracerProvider().get_tracer("test"))
    traced = [
        IncomingRecord(TOPIC, 0, i, _result("b1", f"c{i}"), headers={"traceparent": TRACEPARENT})
        for i in range(3)
    ]
    await aggregator.add_results(traced[:2])
    assert aggregator._open["b1"].trace_links == []  # tracing off: a valid context, not kept

    provider = TracerProvider()
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("test"))
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: True)
    await aggregator.add_results(traced[2:])
    links = aggregator._open["b1"].trace_links
    assert len(links) == 1
    assert format(links[0].trace_id, "032x") == TRACEPARENT.split("-")[1]


async def test_no_span_is_built_per_result_without_a_tracer_provider(
    tmp_path: Path, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A no-op span still costs microseconds per line: without tracing, none is started."""
    aggregator = make(tmp_path, FakeStatusPublisher())
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: False)
    monkeypatch.setattr(telemetry, "tracer", lambda: pytest.fail("a span was started"))
    await aggregator.add_results(_records([_result("b1", "a"), _result("b1", "b")]))
    assert aggregator.received("b1") == 2


async def test_each_aggregator_spools_privately_and_close_deletes_it(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("own-spool")
    first = BatchAggregator(LocalFileStore(tmp_path), FakeStatusPublisher(), spool_root=root)
    second = BatchAggregator(LocalFileStore(tmp_path), FakeStatusPublisher(), spool_root=root)
    try:
        await first.add_results(_records([_result("b1", "a")]))
        await second.add_results(_records([_result("b1", "a"), _result("b1", "b")]))
        assert (first.received("b1"), second.received("b1")) == (1, 2)
        assert len(list(root.iterdir())) == 2
    finally:
        first.close()
        second.close()
    assert list(root.iterdir()) == []
    first.close()  # idempotent


def _raw_result(batch_id: str, custom_id: str, body: str) -> bytes:
    response = f'{{"status_code": 200, "request_id": "r", "body": {body}}}'
    return (
        f'{{"batch_id": "{batch_id}", "id": "x", "custom_id": "{custom_id}", '
        f'"response": {response}}}'
    ).encode()


async def test_results_orjson_cannot_write_are_still_written(tmp_path: Path, make: Make) -> None:
    aggregator = make(tmp_path, FakeStatusPublisher())
    await aggregator.add_manifests([_manifest("big", 2)])
    huge = _raw_result("big", "a", '{"n": 1180591620717411303424}')  # 2**70: valid JSON
    both = _raw_result("big", "b", '{"n": 1180591620717411303424, "f": 1e400}')
    invalid_before = invalid_results()
    await aggregator.add_results(_records([huge, both]))  # orjson raised on both: a poll failed
    lines = [
        json.loads(line)
        for line in (tmp_path / "big" / "output.jsonl").read_bytes().split(b"\n")[:-1]
    ]
    assert [line["response"]["body"]["n"] for line in lines] == [2**70, 2**70]
    assert lines[1]["response"]["body"]["f"] is None  # as orjson writes an infinity
    assert invalid_results() == invalid_before
    assert aggregator.committable() == {(TOPIC, 0): 2}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.binary(max_size=200)
        | st.builds(
            _raw_result,
            st.sampled_from(["b1", "b2", "../x", ""]),
            st.text(max_size=20).map(json.dumps).map(lambda quoted: quoted[1:-1]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
                max_leaves=8,
            ).map(lambda body: json.dumps({"v": body})),
        ),
        max_size=8,
    )
)
def test_no_record_value_makes_add_results_raise(values: list[bytes]) -> None:
    async def run(root: Path) -> None:
        aggregator = BatchAggregator(
            LocalFileStore(root / "out"), FakeStatusPublisher(), spool_root=root
        )
        try:
            await aggregator.add_manifests([_manifest("b1", 2)])
            await aggregator.add_results(_records(values))
            held = aggregator.committable()
            if values:
                assert set(held) == {(TOPIC, 0)}
                assert 0 <= held[(TOPIC, 0)] <= len(values)
            assert aggregator.open_batches + aggregator.batches_written <= 2  # b1 and b2 only
        finally:
            aggregator.close()

    with tempfile.TemporaryDirectory() as root:
        asyncio.run(run(Path(root)))


async def test_a_fetch_of_manifests_is_checked_against_the_store_together(
    tmp_path: Path, make: Make
) -> None:
    """A restart reads every manifest still on the topic: asked one at a time, a store (an S3
    HEAD each) made the manifest reader lag as long as the history was long."""
    both_asked = threading.Barrier(2, timeout=10)  # broken if the checks come one at a time

    class SlowStore(LocalFileStore):
        def is_written(self, batch_id: str) -> bool:
            if batch_id in {"done0", "done1"}:
                both_asked.wait()
            return batch_id.startswith("done")

    aggregator = BatchAggregator(SlowStore(tmp_path), FakeStatusPublisher())
    manifests = [_manifest(f"done{n}", 1) for n in range(30)] + [_manifest("open", 1)]
    await aggregator.add_manifests(manifests)
    assert not both_asked.broken
    assert aggregator.state_sizes()["manifests"] == 1
    aggregator.close()
