"""Request and reply: a record with a reply topic and a correlation id is a single request,
answered on that topic instead of the results topic.

Header names follow FastStream (``reply_to``, ``correlation_id``); Spring Kafka's
(``kafka_replyTopic``, ``kafka_correlationId``) are read too, and the reply carries the
correlation id under the name the request used. A reply topic is a place the worker writes
because a producer asked: it must match ``Settings.reply_topics_pattern`` and exist (the worker
never creates one), and is never one of the service's own topics. A request whose reply cannot
be delivered is a dead letter with the reason; nothing here blocks longer than
``reply_metadata_timeout_s``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownTopicOrPartitionError,
)
from faststream.kafka import KafkaBroker

from llm_stream.batch.error_bodies import response_too_large
from llm_stream.batch.result_lines import new_request_id, with_request_id
from llm_stream.contracts import (
    CORRELATION_ID_HEADER,
    REPLY_TO_HEADER,
    ErrorData,
    ReplyMessage,
    ResponseData,
)
from llm_stream.kafka.connection import client_kwargs, start_client
from llm_stream.kafka.publishers import MessageSizeCheck
from llm_stream.protocols import MessageTooLargeError
from llm_stream.settings import Settings
from llm_stream.worker.request_parsing import NO_CUSTOM_ID, DeadLetter

#: Spring Kafka's names for the same two headers.
SPRING_REPLY_TO_HEADER = "kafka_replyTopic"
SPRING_CORRELATION_ID_HEADER = "kafka_correlationId"
#: Kafka's own limit on a topic name; and a correlation id is an id, not a payload.
_MAX_TOPIC_CHARS = 249
MAX_CORRELATION_ID_CHARS = 512


@dataclass(frozen=True, slots=True)
class ReplyRoute:
    """Where a single request's answer goes, and the header that carries its correlation id."""

    topic: str
    correlation_id: str
    correlation_header: str = CORRELATION_ID_HEADER


class ReplyUndeliverableError(Exception):
    """The reply topic cannot take the reply: the request becomes a dead letter."""


def reply_route(
    headers: Mapping[str, str], allowed: re.Pattern[str] | None, reserved: Collection[str]
) -> ReplyRoute | DeadLetter | None:
    """The record's reply route; None for a batch record (no reply topic); a dead letter for
    a reply topic this deployment does not allow or a request without a correlation id."""
    names = (REPLY_TO_HEADER, CORRELATION_ID_HEADER)
    if REPLY_TO_HEADER not in headers and SPRING_REPLY_TO_HEADER in headers:
        names = (SPRING_REPLY_TO_HEADER, SPRING_CORRELATION_ID_HEADER)
    topic = headers.get(names[0])
    if topic is None:
        return None
    if allowed is None or not allowed.fullmatch(topic) or topic in reserved:
        return DeadLetter(f"reply topic {topic[:_MAX_TOPIC_CHARS]!r} is not allowed here")
    if len(topic) > _MAX_TOPIC_CHARS:
        return DeadLetter(f"reply topic name longer than {_MAX_TOPIC_CHARS} characters")
    correlation_id = headers.get(names[1])
    if not correlation_id:
        return DeadLetter(f"a reply topic without a {names[1]} header")
    if len(correlation_id) > MAX_CORRELATION_ID_CHARS:
        return DeadLetter(f"{names[1]} longer than {MAX_CORRELATION_ID_CHARS} characters")
    return ReplyRoute(topic, correlation_id, names[1])


def reply_message(
    route: ReplyRoute, custom_id: str, answer: ResponseData | ErrorData
) -> ReplyMessage:
    """The reply: the engine's (or the request rules') response, or an error of the service's
    own (no response: not run)."""
    response, error = (None, answer) if isinstance(answer, ErrorData) else (answer, None)
    return ReplyMessage(
        id=f"reply_{new_request_id()}",
        custom_id=None if custom_id == NO_CUSTOM_ID else custom_id,
        correlation_id=route.correlation_id,
        response=None if response is None else with_request_id(response),
        error=error,
    )


class ReplyPublisher(Protocol):
    """Writes replies; ``topic_exists`` is answered within a bounded time."""

    async def topic_exists(self, topic: str) -> bool: ...

    async def publish_reply(
        self, topic: str, value: bytes, key: bytes | None, headers: Mapping[str, str]
    ) -> None: ...


class Replies:
    """Decides whether a record asks for a reply and delivers it (one place for the rules)."""

    def __init__(self, publisher: ReplyPublisher, pattern: str, reserved: Collection[str]) -> None:
        self._publisher = publisher
        self._allowed = re.compile(pattern) if pattern else None
        self._reserved = frozenset(reserved)

    @classmethod
    def of(cls, settings: Settings, publisher: ReplyPublisher) -> Replies:
        return cls(publisher, settings.reply_topics_pattern, settings.topics())

    def route(self, headers: Mapping[str, str]) -> ReplyRoute | DeadLetter | None:
        return reply_route(headers, self._allowed, self._reserved)

    async def missing(self, route: ReplyRoute) -> DeadLetter | None:
        """A dead letter when the reply topic does not exist (checked before the engine runs)."""
        if await self._publisher.topic_exists(route.topic):
            return None
        return DeadLetter(f"reply topic {route.topic!r} does not exist")

    async def send(
        self,
        route: ReplyRoute,
        key: bytes | None,
        upstream: Mapping[str, str],
        custom_id: str,
        answer: ResponseData | ErrorData,
    ) -> ReplyMessage:
        """Publish the reply keyed as the request was, with its correlation id and trace
        headers; an answer too large for Kafka is replaced by vLLM's error. Returns what was
        sent; raises ``ReplyUndeliverableError``."""
        headers = {
            **upstream,
            route.correlation_header: route.correlation_id,
            "content-type": "application/json",
        }
        reply = reply_message(route, custom_id, answer)
        try:
            await self._publish(route.topic, reply, key, headers)
        except MessageTooLargeError as error:
            too_large = response_too_large(error.size, error.limit, new_request_id())
            reply = reply.model_copy(update={"response": too_large})
            await self._publish(route.topic, reply, key, headers)
        return reply

    async def _publish(
        self, topic: str, reply: ReplyMessage, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        value = orjson.dumps(reply.model_dump(mode="json"))
        await self._publisher.publish_reply(topic, value, key, headers)


class KafkaReplyPublisher:
    """Publishes replies with the worker's broker; learns which topics exist from an admin
    client whose answers are bounded by ``reply_metadata_timeout_s`` (aiokafka itself would
    block on a missing topic's metadata for its whole request timeout)."""

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
        self._broker = broker
        self._connection = client_kwargs(settings)
        self._timeout = settings.reply_metadata_timeout_s
        self._sizes = MessageSizeCheck(settings)
        self._admin: AIOKafkaAdminClient | None = None
        self._known: set[str] = set()
        self._listed_at = 0.0
        self._listing = asyncio.Lock()

    async def topic_exists(self, topic: str) -> bool:
        if topic in self._known:
            return True
        async with self._listing:  # one listing at a time, at most one a second
            if topic not in self._known and time.monotonic() - self._listed_at >= 1.0:
                try:
                    self._known = set(await asyncio.wait_for(self._list(), self._timeout))
                except (TimeoutError, KafkaError, OSError):
                    await self._reset()
                self._listed_at = time.monotonic()
        return topic in self._known

    async def _list(self) -> list[str]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._connection)
            await start_client(admin, self._connection)
            self._admin = admin
        return list(await self._admin.list_topics())

    async def _reset(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    async def publish_reply(
        self, topic: str, value: bytes, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        self._sizes.check(value, key, headers)
        try:
            await asyncio.wait_for(
                self._broker.publish(value, topic, key=key, headers=dict(headers)), self._timeout
            )
        except (MessageSizeTooLargeError, RecordListTooLargeError) as error:
            raise MessageTooLargeError(len(value), self._sizes.limit) from error
        except (TimeoutError, UnknownTopicOrPartitionError) as error:
            # The topic went away, or the broker is unreachable: only the first is the
            # request's fault; the second fails the worker and the request is redelivered.
            self._known.discard(topic)
            self._listed_at = 0.0
            if await self.topic_exists(topic):
                raise
            raise ReplyUndeliverableError(f"reply topic {topic!r} does not exist") from error

    async def close(self) -> None:
        await self._reset()
