"""The notifier as a record handler: which records become deliveries, concurrency, and which
offsets may be committed while deliveries are under way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import orjson

from llm_stream.batch.status import BatchStatus
from llm_stream.notifier.core import WebhookNotifier
from llm_stream.notifier.delivery import DeliveryOutcome, RetryPolicy
from llm_stream.notifier.endpoints import configured_endpoints
from llm_stream.notifier.events import event_id
from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.webhook_receiver import SECRET, VerifyingReceiver, batch_in

TOPIC = "status"
PARTITION = (TOPIC, 0)


def _record(offset: int, batch_id: str, status: BatchStatus) -> IncomingRecord:
    value = orjson.dumps(batch_in(batch_id, status).model_dump(mode="json"))
    return IncomingRecord(TOPIC, 0, offset, value, key=batch_id.encode())


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


class Failures:
    def __init__(self) -> None:
        self.recorded: list[DeliveryOutcome] = []

    async def __call__(self, outcome: DeliveryOutcome) -> None:
        self.recorded.append(outcome)


async def _notifier(
    transport: httpx.AsyncBaseTransport, failures: Failures | None = None, urls: int = 1
) -> WebhookNotifier:
    settings = Settings(
        webhook_urls=[f"https://hooks.example/{i}" for i in range(urls)],
        webhook_secrets=[SECRET] * urls,
    )
    notifier = WebhookNotifier(
        configured_endpoints(settings),
        httpx.AsyncClient(transport=transport),
        RetryPolicy(1, 1, 3),
        failures or Failures(),
        max_concurrent=4,
        sleep=_no_wait,
    )
    await notifier.assigned({PARTITION: 0})
    return notifier


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def _settled(notifier: WebhookNotifier) -> None:
    await _until(lambda: notifier.in_flight() == 0)


async def test_only_terminal_statuses_are_delivered_once_per_batch_and_type() -> None:
    receiver = VerifyingReceiver()
    notifier = await _notifier(receiver.transport(), urls=2)
    await notifier.handle(
        [
            _record(0, "batch_a", BatchStatus.IN_PROGRESS),
            _record(1, "batch_a", BatchStatus.COMPLETED),
            _record(2, "batch_b", BatchStatus.CANCELLING),
            _record(3, "batch_a", BatchStatus.COMPLETED),  # republished: skipped
            _record(4, "batch_b", BatchStatus.CANCELLED),
            IncomingRecord(TOPIC, 0, 5, None, key=b"batch_c"),  # a tombstone
            IncomingRecord(TOPIC, 0, 6, b"not json", key=b"batch_d"),
        ]
    )
    await _settled(notifier)
    delivered = sorted((d.event.id, d.event.type) for d in receiver.accepted())
    assert delivered == sorted(
        [(event_id("batch_a", "batch.completed"), "batch.completed")] * 2
        + [(event_id("batch_b", "batch.cancelled"), "batch.cancelled")] * 2
    )
    assert notifier.committable() == {PARTITION: 7}


async def test_a_slow_endpoint_holds_its_batchs_commit_but_not_other_deliveries() -> None:
    release = asyncio.Event()
    answered: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        batch_id = orjson.loads(request.content)["data"]["id"]
        if batch_id == "batch_slow":
            await release.wait()
        answered.append(batch_id)
        return httpx.Response(200)

    notifier = await _notifier(httpx.MockTransport(answer))
    await notifier.handle(
        [
            _record(0, "batch_first", BatchStatus.COMPLETED),
            _record(1, "batch_slow", BatchStatus.COMPLETED),
            _record(2, "batch_fast", BatchStatus.FAILED),
            _record(3, "batch_under_way", BatchStatus.IN_PROGRESS),
        ]
    )
    await _until(lambda: len(answered) == 2)
    assert sorted(answered) == ["batch_fast", "batch_first"]
    assert notifier.committable() == {PARTITION: 1}  # offset 1 is still being delivered
    assert notifier.holds(PARTITION)
    assert notifier.capacity() == 3
    release.set()
    await _settled(notifier)
    assert notifier.committable() == {PARTITION: 4}
    assert not notifier.holds(PARTITION)


async def test_a_delivery_that_finally_fails_is_recorded_counted_and_settled() -> None:
    failures = Failures()
    counter = metrics.WEBHOOK_DELIVERIES.labels("batch.expired", "failed")
    before = counter._value.get()
    receiver = VerifyingReceiver(fail_first=100)
    notifier = await _notifier(receiver.transport(), failures)
    await notifier.handle([_record(0, "batch_late", BatchStatus.EXPIRED)])
    await _settled(notifier)
    [failure] = failures.recorded
    assert failure.event.batch_id == "batch_late"
    assert failure.attempts == 3
    assert counter._value.get() == before + 1
    assert notifier.committable() == {PARTITION: 1}


async def test_a_failure_that_cannot_be_recorded_yet_holds_the_offset_until_it_is() -> None:
    recorded = asyncio.Event()
    calls = 0

    async def flaky_record(outcome: DeliveryOutcome) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("broker unreachable")
        recorded.set()

    notifier = WebhookNotifier(
        configured_endpoints(
            Settings(webhook_urls=["https://hooks.example/h"], webhook_secrets=[SECRET])
        ),
        httpx.AsyncClient(transport=VerifyingReceiver(fail_first=100).transport()),
        RetryPolicy(1, 1, 1),
        flaky_record,
        max_concurrent=1,
        sleep=_no_wait,
    )
    await notifier.assigned({PARTITION: 0})
    await notifier.handle([_record(0, "batch_x", BatchStatus.FAILED)])
    await _settled(notifier)
    assert recorded.is_set()
    assert calls == 3
    assert notifier.committable() == {PARTITION: 1}


async def test_revoked_partitions_stop_their_deliveries_and_commit_nothing() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    notifier = await _notifier(httpx.MockTransport(never))
    await notifier.handle([_record(0, "batch_a", BatchStatus.COMPLETED)])
    await asyncio.sleep(0.05)
    assert notifier.in_flight() == 1
    await notifier.revoked([PARTITION])
    assert notifier.in_flight() == 0
    assert notifier.committable() == {}
    # Assigned again, the record is read again and delivered again: it was never delivered.
    await notifier.assigned({PARTITION: 0})
    await notifier.handle([_record(0, "batch_a", BatchStatus.COMPLETED)])
    assert notifier.in_flight() == 1
    assert not await notifier.drain(0.05)
    assert notifier.in_flight() == 0


async def test_capacity_counts_deliveries_under_way() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    notifier = await _notifier(httpx.MockTransport(never))
    await notifier.handle([_record(i, f"batch_{i}", BatchStatus.COMPLETED) for i in range(4)])
    assert notifier.capacity() == 0
    assert not await notifier.drain(0.01)
    assert notifier.capacity() == 4
