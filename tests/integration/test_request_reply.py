"""Request and reply on a real broker (echo engine): one request with a reply topic and a
correlation id, no batch, is answered on that topic, from the client library and from a plain
Kafka client; a reply topic not allowed or missing is a dead letter and the worker goes on; a
worker that dies before it replies leaves the request to another, which replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from llm_stream.client import BatchClient, ReplyTimeoutError
from llm_stream.kafka.dead_letters import ERROR_HEADER
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect

pytestmark = pytest.mark.broker

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def chat(prompt: str) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": prompt}]}


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, engine: FakeEngine) -> AsyncIterator[WorkerApp]:
    worker = WorkerApp(settings, engine)
    run = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stopping.set()
        assert await asyncio.wait_for(run, 30) == 0


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, replication_factor=1)])
    finally:
        await admin.close()


async def test_the_client_asks_and_gets_the_answer(isolated_settings: Settings) -> None:
    settings = isolated_settings.with_overrides(
        reply_topic=f"llm-stream.replies.{isolated_settings.requests_topic}"
    )
    await ensure_topics(settings)
    engine = FakeEngine()
    async with running_worker(settings, engine), BatchClient.from_settings(settings) as client:
        first, second = await asyncio.gather(
            client.ask(chat("hello"), timeout=60),
            client.ask(chat("order 7"), timeout=60, custom_id="order-7"),
        )
        unknown = await client.ask({"model": "fake", "prompt": "x"}, endpoint="/v1/nope")
    assert first.status_code == 200
    assert first.body is not None
    assert first.body["choices"][0]["message"]["content"] == "HELLO"
    assert second.body is not None
    assert second.body["choices"][0]["message"]["content"] == "ORDER 7"
    assert unknown.status_code == 404  # as vLLM's server answers an unknown endpoint
    assert len(engine.seen) == 2  # the unknown endpoint was never served
    results = await collect(settings.bootstrap_servers, settings.results_topic, bool, 1)
    assert results == []  # a single request has no batch: nothing on the results topic


async def test_a_timeout_is_a_typed_error(isolated_settings: Settings) -> None:
    settings = isolated_settings.with_overrides(
        reply_topic=f"llm-stream.replies.{isolated_settings.requests_topic}"
    )
    await ensure_topics(settings)
    async with BatchClient.from_settings(settings) as client:  # no worker runs
        with pytest.raises(ReplyTimeoutError):
            await client.ask(chat("anyone?"), timeout=1)


async def test_a_plain_kafka_client_gets_the_reply_keyed_and_correlated(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    replies = f"llm-stream.replies.{settings.requests_topic}"
    await ensure_topics(settings)
    await create_topic(settings.bootstrap_servers, replies)
    consumer = AIOKafkaConsumer(
        replies, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    line = {"custom_id": "doc-1", "url": "/v1/chat/completions", "body": chat("enrich me")}
    try:
        await producer.send_and_wait(
            settings.requests_topic,
            orjson.dumps(line),
            key=b"order-7",
            headers=[
                ("reply_to", replies.encode()),
                ("correlation_id", b"c-faststream"),
                ("traceparent", TRACEPARENT.encode()),
            ],
        )
        await producer.send_and_wait(  # Spring Kafka's header names
            settings.requests_topic,
            orjson.dumps({"url": "/v1/completions", "body": {"model": "m", "prompt": "p"}}),
            key=b"order-8",
            headers=[("kafka_replyTopic", replies.encode()), ("kafka_correlationId", b"c-spring")],
        )
        await producer.send_and_wait(  # a broken line is answered as vLLM's server would
            settings.requests_topic,
            orjson.dumps({"url": "/v1/completions", "body": "not an object"}),
            key=b"order-9",
            headers=[("reply_to", replies.encode()), ("correlation_id", b"c-broken")],
        )
        got: list[Any] = []
        async with running_worker(settings, FakeEngine()):
            while len(got) < 3:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                got += [record for records in batches.values() for record in records]
    finally:
        await producer.stop()
        await consumer.stop()
    by_key = {record.key: record for record in got}
    assert set(by_key) == {b"order-7", b"order-8", b"order-9"}
    faststream, spring = by_key[b"order-7"], by_key[b"order-8"]
    headers = dict(faststream.headers)
    assert headers["correlation_id"] == b"c-faststream"
    trace_id = TRACEPARENT.split("-")[1]
    assert headers["traceparent"].decode().split("-")[1] == trace_id
    reply = orjson.loads(faststream.value)
    assert reply["correlation_id"] == "c-faststream"
    assert reply["custom_id"] == "doc-1"
    assert reply["response"]["status_code"] == 200
    assert reply["response"]["body"]["choices"][0]["message"]["content"] == "ENRICH ME"
    assert dict(spring.headers)["kafka_correlationId"] == b"c-spring"
    spring_reply = orjson.loads(spring.value)
    assert spring_reply["custom_id"] is None
    assert spring_reply["response"]["body"]["choices"][0]["text"] == "P"
    broken = orjson.loads(by_key[b"order-9"].value)
    assert broken["correlation_id"] == "c-broken"
    assert broken["response"]["status_code"] == 400
    assert "body must be a JSON object" in broken["response"]["body"]["error"]["message"]


async def test_reply_topics_not_allowed_or_missing_are_dead_letters(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(reply_metadata_timeout_s=2.0)
    replies = f"llm-stream.replies.{settings.requests_topic}"
    missing = f"llm-stream.replies.{settings.requests_topic}.missing"
    await ensure_topics(settings)
    await create_topic(settings.bootstrap_servers, replies)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    value = orjson.dumps({"url": "/v1/completions", "body": {"model": "m", "prompt": "p"}})
    asks = [
        (settings.results_topic, b"own-topic"),  # the service's own topic: never
        ("elsewhere", b"outside-pattern"),
        (missing, b"missing"),
        (replies, b""),  # no correlation id
        (replies, b"fine"),
    ]
    try:
        for topic, correlation in asks:
            headers = [("reply_to", topic.encode())]
            if correlation:
                headers.append(("correlation_id", correlation))
            await producer.send_and_wait(
                settings.requests_topic, value, key=correlation, headers=headers
            )
    finally:
        await producer.stop()
    engine = FakeEngine()
    async with running_worker(settings, engine):
        answered = await collect(settings.bootstrap_servers, replies, bool, 60, settle=1)
        dead = await collect(
            settings.bootstrap_servers,
            settings.dead_letter_topic,
            lambda got: len(got) >= 4,
            60,
            decode=lambda value: value,
        )
    assert [reply["correlation_id"] for reply in answered] == ["fine"]
    assert len(dead) == 4
    assert len(engine.seen) == 1  # nothing undeliverable spent the engine
    reasons = await dead_letter_reasons(settings)
    assert sorted(reasons) == sorted(
        [
            f"reply topic {settings.results_topic!r} is not allowed here",
            "reply topic 'elsewhere' is not allowed here",
            f"reply topic {missing!r} does not exist",
            "a reply topic without a correlation_id header",
        ]
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()  # the worker never creates one
    finally:
        await admin.close()


async def dead_letter_reasons(settings: Settings) -> list[str]:
    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        records = [record for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return [dict(record.headers)[ERROR_HEADER].decode() for record in records]


async def test_a_worker_killed_before_it_replies_leaves_the_reply_to_another(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        reply_topic=f"llm-stream.replies.{isolated_settings.requests_topic}",
    )
    await ensure_topics(settings)
    slow = FakeEngine(delays={"slow": 600})
    first = WorkerApp(settings, slow)
    first_run = asyncio.create_task(first.run())
    async with BatchClient.from_settings(settings) as client:
        asking = asyncio.create_task(client.ask(chat("slow"), timeout=120))
        while not slow.seen:
            assert not asking.done()
            await asyncio.sleep(0.1)
        first_run.cancel()  # a crash: no drain, no reply, no commit
        with contextlib.suppress(asyncio.CancelledError):
            await first_run
        second = FakeEngine()
        async with running_worker(settings, second):
            answer = await asking
    assert answer.status_code == 200
    assert answer.body is not None
    assert answer.body["choices"][0]["message"]["content"] == "SLOW"
    assert len(second.seen) == 1  # redelivered to the second worker, which answered
