"""``FakeBatchClient``: a ``BatchClient`` for the tests of code that uses one, with no broker.

As httpx ships ``MockTransport`` and FastStream ``TestKafkaBroker``, the fake replaces only the
transport: it is a ``BatchClient`` whose producer and status view keep their records in
memory, so ``submit``, ``batch``, ``retrieve``, ``cancel`` and ``wait`` run the client's own
code and refuse what it refuses (a bad line, a duplicate ``custom_id``, a cancel too late).
The test plays the service's part: ``set_status`` publishes a batch's object, as the
aggregator would, and ``submitted``, ``manifest`` and ``lines`` show what was submitted;
``asked`` shows a request sent with ``ask`` and ``reply`` answers it, as a worker would.

    client = FakeBatchClient()
    running = asyncio.create_task(code_under_test(client))  # submits, then waits
    manifest = await client.submitted()
    client.set_status(manifest.batch_id, BatchStatus.COMPLETED)
    assert await running == ...
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from llm_stream.batch.objects import batch_object
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.config import ClientConfig
from llm_stream.client.request_reply import ReplyTimeoutError, single_request
from llm_stream.client.status_view import BatchStatusView
from llm_stream.contracts import BatchManifest, BatchObject, BatchStatus, ResponseData


@dataclass(frozen=True)
class SentRecord:
    """One record as the client sent it."""

    topic: str
    key: str
    value: bytes


class _InMemoryTopics:
    """Every record sent, in order, and an event set on each (the status view's wake-up)."""

    def __init__(self) -> None:
        self.records: list[SentRecord] = []
        self.changed = asyncio.Event()

    def append(self, record: SentRecord) -> RecordMetadata:
        self.records.append(record)
        self.changed.set()
        self.changed = asyncio.Event()
        offset = len(self.records) - 1
        return RecordMetadata(record.topic, 0, TopicPartition(record.topic, 0), offset, -1, 0, 0)

    def latest(self, topic: str, key: str) -> bytes | None:
        return next(
            (r.value for r in reversed(self.records) if r.topic == topic and r.key == key), None
        )


class _InMemoryProducer:
    """aiokafka's producer as the client uses it: every send is confirmed at once."""

    def __init__(self, topics: _InMemoryTopics) -> None:
        self._topics = topics

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> asyncio.Future[RecordMetadata]:
        confirmed: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        confirmed.set_result(self._topics.append(SentRecord(topic, key.decode(), value)))
        return confirmed

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> RecordMetadata:
        return await (await self.send(topic, value, key, headers))


class _InMemoryStatusView:
    """The status view as the client uses it, over the records sent: the latest batch object
    of a batch, or ``validating`` when only its manifest was sent."""

    def __init__(self, topics: _InMemoryTopics, config: ClientConfig) -> None:
        self._topics = topics
        self._config = config

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def watch(self, batch_id: str) -> None:
        pass

    async def caught_up(self) -> None:
        pass

    async def changed(self) -> None:
        await self._topics.changed.wait()

    def latest(self, batch_id: str) -> BatchObject | None:
        status = self._topics.latest(self._config.batch_status_topic, batch_id)
        if status is not None:
            return BatchObject.model_validate_json(status)
        manifest = self._topics.latest(self._config.batches_topic, batch_id)
        if manifest is None:
            return None
        return batch_object(BatchManifest.model_validate_json(manifest), BatchStatus.VALIDATING)


class FakeBatchClient(BatchClient):
    """A ``BatchClient`` whose records stay in memory; see the module docstring."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        super().__init__(config or ClientConfig(connection={}))
        self._topics = _InMemoryTopics()
        self._fake_producer = _InMemoryProducer(self._topics)
        self._fake_view = _InMemoryStatusView(self._topics, self.config)
        #: Requests sent with ``ask`` and not yet replied to, oldest first.
        self._asks: list[tuple[dict[str, Any], asyncio.Future[ResponseData]]] = []
        self._asked = asyncio.Event()

    async def ask(
        self,
        body: Any,
        *,
        endpoint: str = "/v1/chat/completions",
        timeout: float = 60.0,  # noqa: ASYNC109
        custom_id: str | None = None,
        key: bytes | None = None,
        priority: int | None = None,
        deadline: float | None = None,
    ) -> ResponseData:
        """Wait for the test's ``reply`` to this request; ``ReplyTimeoutError`` as the real
        client raises it. ``key``, ``priority`` and ``deadline`` are not kept: the test's
        reply decides the answer."""
        answer: asyncio.Future[ResponseData] = asyncio.get_running_loop().create_future()
        self._asks.append((single_request(body, endpoint, custom_id), answer))
        self._asked.set()
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError as error:
            raise ReplyTimeoutError(f"no reply within {timeout} s") from error
        finally:
            self._asks = [(line, waiting) for line, waiting in self._asks if waiting is not answer]

    async def asked(self) -> dict[str, Any]:
        """The oldest request sent with ``ask`` and not replied to, once there is one."""
        while not self._asks:
            self._asked.clear()
            await self._asked.wait()
        return self._asks[0][0]

    def reply(self, response: ResponseData) -> None:
        """Answer the oldest request waiting in ``ask`` with ``response``."""
        if not self._asks:
            raise LookupError("no request is waiting for a reply")
        _, answer = self._asks.pop(0)
        answer.set_result(response)

    async def producer(self) -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, self._fake_producer)

    async def status_view(self) -> BatchStatusView:
        return cast(BatchStatusView, self._fake_view)

    @property
    def sent(self) -> list[SentRecord]:
        """Every record the client sent, in order (manifests, lines and cancels)."""
        return list(self._topics.records)

    def manifest(self, batch_id: str) -> BatchManifest | None:
        """The batch's manifest, as submitted; None when it was not."""
        value = self._topics.latest(self.config.batches_topic, batch_id)
        return None if value is None else BatchManifest.model_validate_json(value)

    def add_submitted(self, manifest: BatchManifest) -> None:
        """A batch submitted earlier, by another client: its manifest is there to be read."""
        value = orjson.dumps(manifest.model_dump(mode="json", exclude_none=True))
        self._topics.append(SentRecord(self.config.batches_topic, manifest.batch_id, value))

    async def submitted(self) -> BatchManifest:
        """The latest manifest sent, once there is one: a test waits here while the code it
        runs submits."""
        while True:
            topic = self.config.batches_topic
            sent = [record for record in self._topics.records if record.topic == topic]
            if sent:
                return BatchManifest.model_validate_json(sent[-1].value)
            await self._topics.changed.wait()

    def lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The batch's request lines as published (each with its ``batch_id``), in order."""
        prefix = f"{batch_id}/"
        return [
            orjson.loads(record.value)
            for record in self._topics.records
            if record.topic == self.config.requests_topic and record.key.startswith(prefix)
        ]

    def set_status(
        self,
        batch_id: str,
        status: BatchStatus,
        *,
        completed: int | None = None,
        failed: int = 0,
    ) -> BatchObject:
        """Publish the batch's object in ``status``, as the aggregator would; ``completed``
        defaults to every line not ``failed`` for a completed batch, else 0. Returns it."""
        manifest = self.manifest(batch_id)
        if manifest is None:
            raise LookupError(f"batch {batch_id} was not submitted to this client")
        if completed is None:
            completed = manifest.request_count - failed if status is BatchStatus.COMPLETED else 0
        at = int(time.time())
        reached_at = {status: at}
        if status is BatchStatus.CANCELLED:
            reached_at[BatchStatus.CANCELLING] = at
        batch = batch_object(
            manifest, status, completed=completed, failed=failed, reached_at=reached_at
        )
        value = orjson.dumps(batch.model_dump(mode="json"))
        self._topics.append(SentRecord(self.config.batch_status_topic, batch_id, value))
        return batch
