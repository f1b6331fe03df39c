"""What a read costs, on a real broker: the gateway answers retrieve, list and the web page's
progress poll from its status view without a ListOffsets request per read, reads its own
writes, and the view's heap does not grow with the history it follows."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.bench.gateway import publish_history
from llm_stream.client import BatchStatusView, ClientConfig
from llm_stream.contracts import BatchManifest
from llm_stream.gateway.app import create_app
from llm_stream.gateway.stream import KafkaBatchStream
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.gateway_support import serving
from tests.kafka_helpers import publish

pytestmark = pytest.mark.broker


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    ready = isolated_settings.with_overrides(topic_partitions=4)
    await ensure_topics(ready)
    return ready


@pytest.fixture
def list_offsets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each ListOffsets (``end_offsets``) request any consumer sends, by partition count."""
    sent: list[int] = []
    original = AIOKafkaConsumer.end_offsets

    async def counted(self: AIOKafkaConsumer, partitions: list[TopicPartition]) -> Any:
        sent.append(len(partitions))
        return await original(self, partitions)

    monkeypatch.setattr(AIOKafkaConsumer, "end_offsets", counted)
    return sent


async def _publish(
    settings: Settings, batch_id: str, status: BatchStatus, created_at: int = 100
) -> None:
    """The batch object the aggregator would publish."""
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=2)
    manifest = manifest.model_copy(update={"created_at": created_at})
    reached = {} if status is BatchStatus.VALIDATING else {status: created_at + 1}
    batch = batch_object(manifest, status, reached_at=reached)
    await _publish_value(settings, batch_id, orjson.dumps(batch.model_dump(mode="json")))


async def _publish_value(settings: Settings, batch_id: str, value: bytes | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.batch_status_topic, value, key=batch_id.encode())
    finally:
        await producer.stop()


async def test_reads_ask_the_broker_nothing_once_the_view_is_current(
    settings: Settings, list_offsets: list[int]
) -> None:
    now = int(time.time())
    for index in range(5):
        await _publish(settings, f"batch_r{index}", BatchStatus.IN_PROGRESS, now)
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as client:
        at_start = len(list_offsets)
        for _ in range(30):
            assert (await client.get("/v1/batches/batch_r3")).json()["status"] == "in_progress"
            listed = (await client.get("/v1/batches", params={"limit": 2})).json()
            assert [batch["id"] for batch in listed["data"]] == ["batch_r4", "batch_r3"]
            after = (await client.get("/v1/batches", params={"after": "batch_r3"})).json()
            assert [batch["id"] for batch in after["data"]] == ["batch_r2", "batch_r1", "batch_r0"]
        ids = [f"batch_r{index}" for index in range(5)] + [f"batch_gone{i}" for i in range(50)]
        for _ in range(5):  # the page's poll: batches it shows, and some deleted meanwhile
            polled = (await client.get("/ui/progress", params={"id": ids})).json()
            assert len(polled["batches"]) == 5
        assert list_offsets[at_start:] == []

        # An id the view does not know is looked for up to the broker's end, once.
        assert (await client.get("/v1/batches/batch_unknown")).status_code == 404
        assert (await client.get("/v1/batches", params={"after": "batch_no"})).status_code == 404
        assert len(list_offsets) - at_start == 2


async def test_the_gateway_reads_its_own_cancel_at_once(settings: Settings) -> None:
    await _publish(settings, "batch_mine", BatchStatus.IN_PROGRESS)
    stream = KafkaBatchStream(settings)
    await stream.start()
    try:
        for _ in range(5):
            asked = await stream.cancel("batch_mine")
            assert asked is not None
            # No look further: only the view's wait for the cancel's own record makes this hold.
            seen = await stream.retrieve("batch_mine", look_further=False)
            assert seen is not None
            assert seen.status == BatchStatus.CANCELLING
            await _publish(settings, "batch_mine", BatchStatus.IN_PROGRESS)
            await stream.retrieve("batch_mine")  # current again: the view has read it
    finally:
        await stream.close()


async def test_current_holds_every_record_the_broker_had_at_the_call(
    settings: Settings, list_offsets: list[int]
) -> None:
    async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
        view.follow_all()
        await view.caught_up()
        before = len(list_offsets)
        for index in range(5):
            await _publish(settings, f"batch_c{index}", BatchStatus.IN_PROGRESS)
            await view.current(within_s=0.0)
            assert view.latest(f"batch_c{index}") is not None
        assert len(list_offsets) == before


async def test_callers_waiting_for_the_end_share_list_offsets_requests(
    settings: Settings, list_offsets: list[int]
) -> None:
    async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
        view.follow_all()
        await view.caught_up()
        before = len(list_offsets)
        await asyncio.gather(*(view.caught_up() for _ in range(20)))
        assert 1 <= len(list_offsets) - before <= 2


async def test_pages_leave_out_what_is_not_a_batch_object_and_forget_tombstoned_batches(
    settings: Settings,
) -> None:
    for index in range(4):
        await _publish(settings, f"batch_p{index}", BatchStatus.COMPLETED, index)
    bad = orjson.dumps({"id": "batch_bad", "created_at": 2, "status": "sideways"})
    await publish(settings.bootstrap_servers, settings.batch_status_topic, [bad], b"batch_bad")
    await _publish_value(settings, "batch_p1", None)  # a tombstone
    async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
        view.follow_all()
        await view.caught_up()
        first = view.newest(2)
        assert first is not None
        assert [batch.id for batch in first[0]] == ["batch_p3", "batch_p2"]
        rest = view.newest(10, after="batch_p2")
        assert rest is not None
        assert ([batch.id for batch in rest[0]], rest[1]) == (["batch_p0"], False)
        assert view.newest(10, after="batch_p1") is None  # forgotten
        assert view.latest("batch_p1") is None


async def _heap_after_following(settings: Settings, batches: int) -> int:
    """Bytes the Python heap holds, beyond what it held before, once a view of every
    partition has caught up on ``batches`` finished batches."""
    await publish_history(settings, batches)
    gc.collect()
    tracemalloc.start()
    try:
        async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
            view.follow_all()
            await view.caught_up()
            assert view.latest("batch_bench00000000") is not None
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held


async def test_the_views_heap_does_not_grow_with_history(isolated_settings: Settings) -> None:
    small = isolated_settings.with_overrides(
        batches_topic=f"{isolated_settings.batches_topic}.small",
        batch_status_topic=f"{isolated_settings.batch_status_topic}.small",
    )
    small_heap = await _heap_after_following(small, 100)
    large_heap = await _heap_after_following(isolated_settings, 20_000)
    # Held in the heap, 20,000 batches (a manifest and a batch object each) took 30 MB. What
    # may be held either way is a prefetch in flight (64 KiB a partition, decoded): about
    # 1.2 MB was seen in one run of ten, so the bound leaves room for it, not for history.
    assert large_heap - small_heap < 4 << 20, (small_heap, large_heap)
