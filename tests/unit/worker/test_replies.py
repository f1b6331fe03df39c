"""Request and reply's rules: which records ask for a reply, where it may go, what it carries,
and that the pipeline answers, dead-letters and commits them like any record."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import orjson
import pytest

from llm_stream.batch.deadlines import REQUEST_EXPIRED, SINGLE_EXPIRED_MESSAGE
from llm_stream.contracts import DEADLINE_HEADER, ErrorData, ReplyMessage, RequestMessage
from llm_stream.kafka.dead_letters import ERROR_HEADER
from llm_stream.protocols import IncomingRecord, MessageTooLargeError
from llm_stream.settings import Settings
from llm_stream.worker.core import RequestPipeline
from llm_stream.worker.replies import (
    Replies,
    ReplyRoute,
    ReplyUndeliverableError,
    reply_route,
)
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest, parse_record
from tests.fakes import FakeEngine, FakePublisher

ALLOWED = re.compile(r"llm-stream\.replies\..+")
RESERVED = ("llm-stream.results",)
TOPIC = "requests"


def route(headers: Mapping[str, str]) -> ReplyRoute | DeadLetter | None:
    return reply_route(headers, ALLOWED, RESERVED)


def test_a_record_without_a_reply_topic_is_a_batch_record() -> None:
    assert route({"correlation_id": "c1", "traceparent": "x"}) is None


def test_faststream_and_spring_names_are_read_and_kept() -> None:
    assert route({"reply_to": "llm-stream.replies.a", "correlation_id": "c1"}) == ReplyRoute(
        "llm-stream.replies.a", "c1", "correlation_id"
    )
    spring = {"kafka_replyTopic": "llm-stream.replies.a", "kafka_correlationId": "c2"}
    assert route(spring) == ReplyRoute("llm-stream.replies.a", "c2", "kafka_correlationId")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"reply_to": "other.topic", "correlation_id": "c"}, "is not allowed here"),
        ({"reply_to": "llm-stream.replies.", "correlation_id": "c"}, "is not allowed here"),
        ({"reply_to": "llm-stream.results", "correlation_id": "c"}, "is not allowed here"),
        ({"reply_to": "llm-stream.replies.a"}, "without a correlation_id header"),
        ({"reply_to": "llm-stream.replies.a", "correlation_id": ""}, "without a correlation_id"),
        ({"reply_to": "llm-stream.replies.a", "correlation_id": "c" * 513}, "longer than 512"),
        ({"reply_to": "llm-stream.replies." + "a" * 240, "correlation_id": "c"}, "longer than"),
    ],
)
def test_what_a_reply_may_not_be(headers: Mapping[str, str], reason: str) -> None:
    found = route(headers)
    assert isinstance(found, DeadLetter)
    assert reason in found.reason


def test_an_empty_pattern_allows_no_reply_topic() -> None:
    replies = Replies(FakeReplies(), "", RESERVED)
    found = replies.route({"reply_to": "llm-stream.replies.a", "correlation_id": "c"})
    assert isinstance(found, DeadLetter)


def test_the_settings_refuse_a_pattern_that_does_not_compile() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        Settings(reply_topics_pattern="(")


def test_a_single_request_needs_no_batch_nor_custom_id() -> None:
    value = orjson.dumps({"url": "/v1/completions", "body": {"prompt": "p"}})
    assert isinstance(parse_record(value), DeadLetter)  # as a batch line it is unattributable
    parsed = parse_record(value, single=True)
    assert isinstance(parsed, RequestMessage)
    assert parsed.body == {"prompt": "p"}


def test_a_single_requests_broken_line_is_an_error_answer_not_a_dead_letter() -> None:
    value = orjson.dumps({"url": "/v1/completions", "body": [1]})
    parsed = parse_record(value, single=True)
    assert isinstance(parsed, InvalidRequest)
    assert parsed.response.status_code == 400


class FakeReplies:
    """A reply publisher in memory: the topics that exist, what was published."""

    def __init__(self, topics: tuple[str, ...] = (), max_bytes: int = 1_048_576) -> None:
        self.topics = set(topics)
        self.sent: list[tuple[str, ReplyMessage, bytes | None, dict[str, str]]] = []
        self.max_bytes = max_bytes
        self.vanish = False

    async def topic_exists(self, topic: str) -> bool:
        return topic in self.topics

    async def publish_reply(
        self, topic: str, value: bytes, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        if self.vanish:
            raise ReplyUndeliverableError(f"reply topic {topic!r} does not exist")
        if len(value) > self.max_bytes:
            raise MessageTooLargeError(len(value), self.max_bytes)
        self.sent.append((topic, ReplyMessage.model_validate_json(value), key, dict(headers)))


def _record(offset: int, headers: Mapping[str, str], **line: object) -> IncomingRecord:
    body = {"url": "/v1/completions", "body": {"prompt": f"p{offset}"}, **line}
    return IncomingRecord(TOPIC, 0, offset, orjson.dumps(body), b"key-%d" % offset, headers)


async def _run(
    records: list[IncomingRecord], replies: FakeReplies
) -> tuple[FakePublisher, FakeEngine, RequestPipeline]:
    engine, publisher = FakeEngine(), FakePublisher()
    pipeline = RequestPipeline(
        engine,
        publisher,
        max_in_flight=8,
        replies=Replies(replies, ALLOWED.pattern, RESERVED),
    )
    await pipeline.assigned({(TOPIC, 0): 0})
    await pipeline.handle(records)
    assert await pipeline.drain(grace_period=5)
    return publisher, engine, pipeline


async def test_the_pipeline_replies_keyed_correlated_and_traced_then_commits() -> None:
    replies = FakeReplies(("llm-stream.replies.a",))
    headers = {
        "reply_to": "llm-stream.replies.a",
        "correlation_id": "c0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    publisher, _, pipeline = await _run([_record(0, headers, custom_id="doc")], replies)
    assert publisher.results == []
    [(topic, reply, key, sent_headers)] = replies.sent
    assert (topic, key) == ("llm-stream.replies.a", b"key-0")
    assert (reply.correlation_id, reply.custom_id) == ("c0", "doc")
    assert reply.response is not None
    assert reply.response.body is not None
    assert reply.response.body["choices"][0]["text"] == "P0"
    assert sent_headers["correlation_id"] == "c0"
    assert "0af7651916cd43dd8448eb211c80319c" in sent_headers["traceparent"]
    assert pipeline.committable() == {(TOPIC, 0): 1}


async def test_undeliverable_replies_are_dead_letters_and_the_rest_goes_on() -> None:
    replies = FakeReplies(("llm-stream.replies.a",))
    records = [
        _record(0, {"reply_to": "llm-stream.replies.gone", "correlation_id": "c0"}),
        _record(1, {"reply_to": "elsewhere", "correlation_id": "c1"}),
        _record(2, {"reply_to": "llm-stream.replies.a", "correlation_id": "c2"}),
    ]
    publisher, engine, pipeline = await _run(records, replies)
    assert [reply.correlation_id for _, reply, _, _ in replies.sent] == ["c2"]
    reasons = sorted(headers[ERROR_HEADER] for _, headers in publisher.dead_letters)
    assert reasons == [
        "reply topic 'elsewhere' is not allowed here",
        "reply topic 'llm-stream.replies.gone' does not exist",
    ]
    assert len(engine.seen) == 1  # dead letters never spend the engine
    assert pipeline.committable() == {(TOPIC, 0): 3}


async def test_a_topic_that_vanishes_before_the_reply_is_a_dead_letter_too() -> None:
    replies = FakeReplies(("llm-stream.replies.a",))
    replies.vanish = True
    headers = {"reply_to": "llm-stream.replies.a", "correlation_id": "c0"}
    publisher, _, pipeline = await _run([_record(0, headers)], replies)
    [(_, letter_headers)] = publisher.dead_letters
    assert "does not exist" in letter_headers[ERROR_HEADER]
    assert pipeline.committable() == {(TOPIC, 0): 1}


async def test_an_answer_too_large_for_kafka_is_replied_as_vllms_error() -> None:
    replies = FakeReplies(("llm-stream.replies.a",), max_bytes=2000)
    headers = {"reply_to": "llm-stream.replies.a", "correlation_id": "c0"}
    await _run([_record(0, headers, body={"prompt": "x" * 3000})], replies)
    [(_, reply, _, _)] = replies.sent
    assert reply.response is not None
    assert reply.response.status_code == 413
    assert reply.correlation_id == "c0"


async def test_a_publish_failure_fails_the_worker_without_committing() -> None:
    class Down(FakeReplies):
        async def publish_reply(self, *args: object) -> None:
            raise ConnectionError("broker unreachable")

    replies = Down(("llm-stream.replies.a",))
    headers = {"reply_to": "llm-stream.replies.a", "correlation_id": "c0"}
    engine, publisher = FakeEngine(), FakePublisher()
    pipeline = RequestPipeline(
        engine, publisher, max_in_flight=8, replies=Replies(replies, ALLOWED.pattern, RESERVED)
    )
    await pipeline.assigned({(TOPIC, 0): 0})
    await pipeline.handle([_record(0, headers)])
    await asyncio.wait_for(pipeline.failed.wait(), 5)
    assert pipeline.committable().get((TOPIC, 0), 0) == 0  # redelivered, never lost
    assert replies.sent == []


async def test_a_single_request_past_its_deadline_is_replied_expired_and_never_run() -> None:
    replies = FakeReplies(("llm-stream.replies.a",))
    asked = {"reply_to": "llm-stream.replies.a", "correlation_id": "late"}
    records = [
        _record(0, {**asked, DEADLINE_HEADER: "1000"}),  # long past
        _record(1, {**asked, "correlation_id": "soon", DEADLINE_HEADER: "99999999999"}),
    ]
    publisher, engine, pipeline = await _run(records, replies)
    assert publisher.results == []  # a single request's answer never goes to the results
    replied = {reply.correlation_id: reply for _, reply, _, _ in replies.sent}
    assert replied["late"].response is None
    assert replied["late"].error == ErrorData(code=REQUEST_EXPIRED, message=SINGLE_EXPIRED_MESSAGE)
    assert replied["soon"].response is not None
    assert [request.body["prompt"] for request in engine.seen] == ["p1"]
    assert pipeline.committable() == {(TOPIC, 0): 2}
