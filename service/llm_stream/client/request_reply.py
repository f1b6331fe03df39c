"""Request and reply from the client: publish one request with ``reply_to`` and
``correlation_id`` headers (FastStream's names) and wait for the worker's reply.

One ``ReplyListener`` per client reads the reply topic with no consumer group, from its end
(replies published before it started are not its own), and hands each reply to the call
waiting for its correlation id. A reply can arrive twice (a request redelivered to another
worker answers again): the first is kept, later ones are dropped, which is how any consumer
de-duplicates replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from opentelemetry.trace import SpanKind

from llm_stream.contracts import (
    CORRELATION_ID_HEADER,
    REPLY_TO_HEADER,
    ReplyMessage,
    ResponseData,
)
from llm_stream.errors import LlmStreamError
from llm_stream.kafka.connection import start_client
from llm_stream.ops import telemetry

logger = logging.getLogger(__name__)


class ReplyTimeoutError(LlmStreamError, TimeoutError):
    """No reply came within the timeout (the request may still be answered later)."""


def single_request(
    body: Mapping[str, Any], endpoint: str, custom_id: str | None = None
) -> dict[str, Any]:
    """The record value of one request asking for a reply: a batch input line, no batch."""
    line: dict[str, Any] = {"method": "POST", "url": endpoint, "body": dict(body)}
    if custom_id is not None:
        line["custom_id"] = custom_id
    return line


async def ensure_reply_topic(
    connection: Mapping[str, Any], topic: str, partitions: int, replicas: int
) -> None:
    """Create the reply topic if it is missing: the asking producer may, the worker never."""
    admin = AIOKafkaAdminClient(**connection)
    await start_client(admin, connection)
    try:
        if topic in set(await admin.list_topics()):
            return
        response = await admin.create_topics([NewTopic(topic, partitions, replicas)])
        for name, code, message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"cannot create reply topic {name!r}: {message}")
    finally:
        await admin.close()


def correlation_of(record: Any) -> str | None:
    """The correlation id of a reply record: its header, else its body's field."""
    for name, value in record.headers or ():
        if name in (CORRELATION_ID_HEADER, "kafka_correlationId") and value is not None:
            return bytes(value).decode("utf-8", "replace")
    try:
        found = orjson.loads(record.value).get("correlation_id")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return found if isinstance(found, str) else None


class ReplyListener:
    """Follows the reply topic and resolves the calls waiting for their correlation ids."""

    def __init__(
        self, connection: Mapping[str, Any], topic: str, fetch_max_wait_ms: int = 500
    ) -> None:
        self.topic = topic
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._connection = dict(connection)
        self._waiting: dict[str, asyncio.Future[ReplyMessage]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the topic and take up its end; replies from now on."""
        consumer = AIOKafkaConsumer(
            **self._connection,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await start_client(consumer, self._connection)
        try:
            await consumer.topics()  # the cluster's metadata, so the partitions are known
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise LlmStreamError(f"reply topic {self.topic!r} does not exist")
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            for partition in assigned:  # resolve the positions now, before any request
                await consumer.position(partition)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._follower = asyncio.create_task(self._follow(consumer))

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    self._deliver(record)

    def _deliver(self, record: Any) -> None:
        correlation_id = correlation_of(record)
        waiting = self._waiting.get(correlation_id or "")
        if waiting is None or waiting.done():
            return  # another client's, or a duplicate: the first reply was kept
        try:
            waiting.set_result(ReplyMessage.model_validate_json(record.value))
        except ValueError as error:
            logger.warning("reply %s is not a reply: %s", correlation_id, error)

    def expect(self, correlation_id: str) -> asyncio.Future[ReplyMessage]:
        if self._follower is not None and self._follower.done():
            raise LlmStreamError(f"the reply listener stopped: {self._follower.exception()!r}")
        future: asyncio.Future[ReplyMessage] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    async def stop(self) -> None:
        follower, consumer, self._follower, self._consumer = (
            self._follower,
            self._consumer,
            None,
            None,
        )
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower
        if consumer is not None:
            await consumer.stop()


async def ask(
    producer: AIOKafkaProducer,
    listener: ReplyListener,
    topic: str,
    line: Mapping[str, Any],
    *,
    key: bytes | None,
    timeout: float,  # noqa: ASYNC109
    headers: Mapping[str, str] | None = None,
) -> ResponseData:
    """Publish ``line`` asking for a reply on the listener's topic; the reply's response."""
    correlation_id = uuid.uuid4().hex
    waiting = listener.expect(correlation_id)
    try:
        with telemetry.tracer().start_as_current_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes={"llm_stream.reply_to": topic}
        ):
            sent = {
                **telemetry.headers_with_context(),
                **(headers or {}),
                REPLY_TO_HEADER: listener.topic,
                CORRELATION_ID_HEADER: correlation_id,
            }
            await producer.send_and_wait(
                topic,
                orjson.dumps(dict(line)),
                key=key,
                headers=[(name, value.encode()) for name, value in sent.items()],
            )
        try:
            reply = await asyncio.wait_for(waiting, timeout)
        except TimeoutError as error:
            raise ReplyTimeoutError(
                f"no reply to {correlation_id} on {listener.topic} within {timeout} s"
            ) from error
    finally:
        listener.forget(correlation_id)
    if reply.response is None:
        failure = reply.error
        raise LlmStreamError(f"request failed: {failure.code if failure else 'no response'}")
    return reply.response
