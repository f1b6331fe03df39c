"""The client's reply listener: a reply reaches the call waiting for its correlation id, once."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import orjson
import pytest

from llm_stream.client import FakeBatchClient, ReplyTimeoutError
from llm_stream.client.request_reply import ReplyListener, correlation_of
from llm_stream.contracts import ResponseData


class Record(NamedTuple):
    value: bytes
    headers: list[tuple[str, bytes]]


def reply(correlation_id: str, text: str, header: str = "correlation_id") -> Record:
    body: dict[str, Any] = {
        "id": "reply_1",
        "correlation_id": correlation_id,
        "response": {"status_code": 200, "request_id": "r", "body": {"text": text}},
    }
    return Record(orjson.dumps(body), [(header, correlation_id.encode())])


def test_the_correlation_id_comes_from_the_header_else_the_body() -> None:
    assert correlation_of(reply("c1", "x")) == "c1"
    assert correlation_of(reply("c2", "x", header="kafka_correlationId")) == "c2"
    assert correlation_of(Record(reply("c3", "x").value, [])) == "c3"
    assert correlation_of(Record(b"not json", [])) is None


async def test_the_first_reply_is_kept_and_others_are_ignored() -> None:
    listener = ReplyListener({}, "llm-stream.replies.t")
    waiting = listener.expect("c1")
    listener._deliver(reply("someone-else", "no"))
    assert not waiting.done()
    listener._deliver(reply("c1", "first"))
    listener._deliver(reply("c1", "second"))  # a redelivered request answered again
    answer = await asyncio.wait_for(waiting, 1)
    assert answer.response is not None
    assert answer.response.body == {"text": "first"}


async def test_a_record_that_is_no_reply_leaves_the_call_waiting() -> None:
    listener = ReplyListener({}, "llm-stream.replies.t")
    waiting = listener.expect("c1")
    listener._deliver(Record(b'{"correlation_id": "c1"}', []))
    assert not waiting.done()


async def test_the_fake_client_lets_a_test_reply_to_ask() -> None:
    client = FakeBatchClient()
    asking = asyncio.create_task(
        client.ask({"model": "m", "prompt": "p"}, endpoint="/v1/completions", custom_id="t1")
    )
    assert await asyncio.wait_for(client.asked(), 1) == {
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "m", "prompt": "p"},
        "custom_id": "t1",
    }
    client.reply(ResponseData(status_code=200, request_id="r", body={"ok": True}))
    answer = await asyncio.wait_for(asking, 1)
    assert answer.body == {"ok": True}
    with pytest.raises(ReplyTimeoutError):
        await client.ask({"model": "m"}, timeout=0.01)
    with pytest.raises(LookupError):
        client.reply(ResponseData(status_code=200, request_id="r", body={}))
