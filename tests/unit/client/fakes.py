"""What the client's unit tests share: a deployment's settings, a line, and a producer that
records what is sent (the ``producer`` fixture of ``conftest.py`` puts it in the client)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata

from llm_stream.client.config import ClientConfig

CONFIG = ClientConfig(
    connection={"bootstrap_servers": "127.0.0.1:1"},
    requests_topic="req",
    batches_topic="batches",
    batch_status_topic="status",
    max_message_bytes=2048,
)


def line(custom_id: str) -> dict[str, Any]:
    """A valid request line of ``/v1/completions``."""
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": {}}


@dataclass
class Sent:
    topic: str
    key: str
    value: dict[str, Any]
    headers: Any = None


class FakeProducer:
    """Records what is sent; every send is confirmed at once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append(Sent(topic, key.decode(), orjson.loads(value), headers))
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        confirmed.set_result(None)
        return confirmed

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> RecordMetadata:
        self.sent.append(Sent(topic, key.decode(), orjson.loads(value), headers))
        offset = sum(sent.topic == topic for sent in self.sent) - 1
        return RecordMetadata(topic, 0, TopicPartition(topic, 0), offset, -1, 0, -1)
