"""The notifier against a real broker and a receiver built on OpenAI's client: every terminal
batch is delivered and verified, retried until the endpoint takes it, resumed after a restart
without repeats, and recorded on the webhook-failures topic when it never arrives.

Batch objects are published straight to the batch-status topic, as the aggregator does.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from llm_stream.batch.status import BatchStatus
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import free_port
from llm_stream.notifier.app import NotifierApp
from llm_stream.notifier.events import event_id
from llm_stream.ops import metrics
from llm_stream.settings import Settings
from tests.kafka_helpers import collect, publish
from tests.processes import running
from tests.webhook_receiver import (
    OTHER_SECRET,
    SECRET,
    ReceiverServer,
    VerifyingReceiver,
    batch_in,
)

pytestmark = pytest.mark.broker

S = BatchStatus


@pytest.fixture
def serve() -> Iterator[Callable[[VerifyingReceiver], ReceiverServer]]:
    servers: list[ReceiverServer] = []

    def start(receiver: VerifyingReceiver) -> ReceiverServer:
        servers.append(ReceiverServer(receiver))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _settings(base: Settings, unique_name: str, url: str, **overrides: object) -> Settings:
    return base.with_overrides(
        topic_partitions=2,
        notifier_group_id=f"{unique_name}.notifiers",
        webhook_failures_topic=f"{unique_name}.webhook-failures",
        webhook_urls=[url],
        webhook_secrets=[SECRET],
        webhook_retry_base_s=0.05,
        webhook_retry_cap_s=0.2,
        webhook_timeout_s=5.0,
        commit_interval_s=0.1,
        # A member that left is replaced quickly (the broker may wait a session for it).
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        **overrides,
    )


async def _publish_statuses(settings: Settings, *batches: tuple[str, BatchStatus]) -> None:
    for batch_id, status in batches:
        value = orjson.dumps(batch_in(batch_id, status).model_dump(mode="json"))
        topic = settings.batch_status_topic
        await publish(settings.bootstrap_servers, topic, [value], key=batch_id.encode())


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {within} s"
        await asyncio.sleep(0.05)


def _accepted_ids(receiver: VerifyingReceiver) -> Counter[str]:
    return Counter(delivery.event.id for delivery in receiver.accepted())


async def test_every_terminal_batch_arrives_verified_on_the_fourth_attempt_after_three_refusals(
    isolated_settings: Settings,
    unique_name: str,
    serve: Callable[[VerifyingReceiver], ReceiverServer],
) -> None:
    receiver = VerifyingReceiver(fail_first=3)
    settings = _settings(
        isolated_settings, unique_name, serve(receiver).url, webhook_max_attempts=4
    )
    await ensure_topics(settings)
    await _publish_statuses(
        settings,
        ("batch_done", S.IN_PROGRESS),
        ("batch_done", S.FINALIZING),
        ("batch_done", S.COMPLETED),
        ("batch_broken", S.FAILED),
        ("batch_late", S.EXPIRED),
        ("batch_stopped", S.CANCELLING),
        ("batch_stopped", S.CANCELLED),
        ("batch_running", S.IN_PROGRESS),
    )
    expected = {
        event_id("batch_done", "batch.completed"),
        event_id("batch_broken", "batch.failed"),
        event_id("batch_late", "batch.expired"),
        event_id("batch_stopped", "batch.cancelled"),
    }
    delivered = metrics.WEBHOOK_DELIVERIES.labels("batch.completed", "delivered")
    before = delivered._value.get()
    app = NotifierApp(settings)
    running_app = asyncio.create_task(app.run())
    try:
        await _until(lambda: set(_accepted_ids(receiver)) == expected, 60, "all four delivered")
        await asyncio.sleep(0.5)  # a repeat would come now
    finally:
        app.stopping.set()
        assert await asyncio.wait_for(running_app, 30) == 0

    assert _accepted_ids(receiver) == dict.fromkeys(expected, 1)
    assert all(d.refused is None for d in receiver.deliveries), "unwrap refused a delivery"
    for event in expected:
        attempts = receiver.attempts_of(event)
        assert [a.answered for a in attempts] == [503, 503, 503, 200]
        assert {a.headers["webhook-id"] for a in attempts} == {event}
    by_batch = {d.event.data.id: d.event.type for d in receiver.accepted()}
    assert by_batch == {
        "batch_done": "batch.completed",
        "batch_broken": "batch.failed",
        "batch_late": "batch.expired",
        "batch_stopped": "batch.cancelled",
    }
    assert delivered._value.get() == before + 1


async def test_a_restarted_notifier_resumes_without_sending_an_event_twice(
    isolated_settings: Settings,
    unique_name: str,
    tmp_path: Path,
    serve: Callable[[VerifyingReceiver], ReceiverServer],
) -> None:
    receiver = VerifyingReceiver()
    settings = _settings(isolated_settings, unique_name, serve(receiver).url)
    await ensure_topics(settings)
    first_batches = [f"batch_before_{i}" for i in range(6)]
    await _publish_statuses(settings, *((b, S.COMPLETED) for b in first_batches))
    ops_port = free_port()
    environment = {
        "bootstrap_servers": settings.bootstrap_servers,
        "batch_status_topic": settings.batch_status_topic,
        "notifier_group_id": settings.notifier_group_id,
        "webhook_failures_topic": settings.webhook_failures_topic,
        "webhook_urls": settings.webhook_urls[0].get_secret_value(),
        "webhook_secrets": SECRET,
        "topic_partitions": "2",
        "commit_interval_s": "0.1",
        "session_timeout_ms": "2000",
        "heartbeat_interval_ms": "500",
        "ops_host": "127.0.0.1",
        "ops_port": str(ops_port),
    }
    with running(["notifier"], environment, tmp_path / "notifier.log") as first:
        await _until(lambda: len(_accepted_ids(receiver)) == 6, 60, "the first six delivered")
        metrics_text = await asyncio.to_thread(_read, f"http://127.0.0.1:{ops_port}/metrics")
        first.send_signal(signal.SIGTERM)  # a drain, then the final commit
        assert await asyncio.to_thread(first.wait, 30) == 0
    assert (
        'llm_stream_webhook_deliveries_total{outcome="delivered",type="batch.completed"} 6.0'
        in metrics_text
    )

    later_batches = [f"batch_after_{i}" for i in range(3)]
    await _publish_statuses(settings, *((b, S.FAILED) for b in later_batches))
    second = NotifierApp(settings)
    running_second = asyncio.create_task(second.run())
    try:
        await _until(lambda: len(_accepted_ids(receiver)) == 9, 60, "the later three delivered")
        await asyncio.sleep(1.0)  # a repeat of the first six would come now
    finally:
        second.stopping.set()
        assert await asyncio.wait_for(running_second, 30) == 0
    ids = _accepted_ids(receiver)
    assert set(ids.values()) == {1}, f"sent twice: {ids}"
    assert set(ids) == {event_id(b, "batch.completed") for b in first_batches} | {
        event_id(b, "batch.failed") for b in later_batches
    }


async def test_a_delivery_refused_every_time_lands_on_the_failures_topic_and_the_metric(
    isolated_settings: Settings,
    unique_name: str,
    serve: Callable[[VerifyingReceiver], ReceiverServer],
) -> None:
    wrong_secret = VerifyingReceiver(OTHER_SECRET)  # OpenAI's client refuses our signature
    settings = _settings(
        isolated_settings, unique_name, serve(wrong_secret).url, webhook_max_attempts=3
    )
    await ensure_topics(settings)
    await _publish_statuses(settings, ("batch_refused", S.COMPLETED))
    failed = metrics.WEBHOOK_DELIVERIES.labels("batch.completed", "failed")
    before = failed._value.get()
    app = NotifierApp(settings)
    running_app = asyncio.create_task(app.run())
    try:
        records = await collect(
            settings.bootstrap_servers,
            settings.webhook_failures_topic,
            lambda values: len(values) >= 1,
            within=60,
        )
    finally:
        app.stopping.set()
        assert await asyncio.wait_for(running_app, 30) == 0

    assert [d.refused for d in wrong_secret.deliveries] == ["InvalidWebhookSignatureError"] * 3
    [record] = records
    assert record["event"]["id"] == event_id("batch_refused", "batch.completed")
    assert record["event"]["data"] == {"id": "batch_refused"}
    assert record["url"] == settings.webhook_urls[0].get_secret_value()
    assert record["attempts"] == 3
    assert record["error"].startswith("HTTP 400")
    assert failed._value.get() == before + 1


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text
