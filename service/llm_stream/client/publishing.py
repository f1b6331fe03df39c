"""How a batch goes onto Kafka: its manifest keyed by ``batch_id``, its request lines keyed by
``batch_id/custom_id``, and a cancel: its ``cancelling`` batch object keyed by ``batch_id``.

The line key spreads one batch over every requests partition (and so over every worker);
results come back keyed by ``batch_id``. Each line carries the trace context of its own
producer span, so a request's trace runs from the upstream service into the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from opentelemetry.trace import SpanKind

from llm_stream.batch.deadlines import deadline_header
from llm_stream.batch.objects import expires_at
from llm_stream.batch.priority import priority_header, priority_of
from llm_stream.batch.request_line import line_model
from llm_stream.client.config import ClientConfig
from llm_stream.client.served_models import ServedModels
from llm_stream.contracts import PROJECT_HEADER, BatchManifest, BatchObject
from llm_stream.kafka.model_topics import model_requests_topic
from llm_stream.ops import telemetry

#: Sends awaited together: throughput without unbounded buffering.
WINDOW = 1000

#: Called with how many more lines the broker confirmed (a progress bar's ``update``).
OnPublished = Callable[[int], object]


def new_producer(config: ClientConfig) -> AIOKafkaProducer:
    """``acks=all``: a line counts as submitted only once every in-sync replica holds it."""
    return AIOKafkaProducer(
        **config.connection,
        enable_idempotence=config.enable_idempotence,
        acks="all",
        linger_ms=10,
    )


async def send_manifest(
    producer: AIOKafkaProducer, config: ClientConfig, manifest: BatchManifest
) -> RecordMetadata:
    """Publish the manifest; where the broker put it."""
    # Without an unset ``model`` or ``project``: aggregators older than those fields refuse
    # unknown fields.
    value = orjson.dumps(manifest.model_dump(mode="json", exclude_none=True))
    return await producer.send_and_wait(config.batches_topic, value, key=manifest.batch_id.encode())


async def send_status(
    producer: AIOKafkaProducer, config: ClientConfig, batch: BatchObject
) -> RecordMetadata:
    """Publish a batch object to the batch-status topic, as the aggregator does; where the
    broker put it."""
    return await producer.send_and_wait(
        config.batch_status_topic,
        orjson.dumps(batch.model_dump(mode="json")),
        key=batch.id.encode(),
        headers=[("content-type", b"application/json")],
    )


def line_topic(config: ClientConfig, line: Mapping[str, Any]) -> str:
    """Where a line goes: its model's topic when routing by model, else the requests topic
    (a line naming no model goes there too: the first served model's group answers it)."""
    model = line_model(line) if config.route_by_model else None
    return (
        config.requests_topic
        if model is None
        else model_requests_topic(config.requests_topic, model)
    )


def batch_line_headers(manifest: BatchManifest) -> list[tuple[str, bytes]]:
    """What every line of the batch carries for workers: its deadline (the end of its
    completion window) and its priority (its metadata's ``llm-stream-priority``, if any)."""
    headers = []
    if (deadline := expires_at(manifest)) is not None:
        headers.append(deadline_header(deadline))
    if (priority := priority_of(manifest.metadata)) is not None:
        headers.append(priority_header(priority))
    return headers


def single_request_headers(
    *, priority: int | None, deadline: float | None, project: str | None
) -> dict[str, str]:
    """What a single request (``BatchClient.ask``) carries for workers besides its reply
    route: the same priority and deadline headers as a batch's lines, and its project."""
    headers = []
    if priority is not None:
        headers.append(priority_header(priority))
    if deadline is not None:
        headers.append(deadline_header(deadline))
    if project is not None:
        headers.append((PROJECT_HEADER, project.encode()))
    return {name: value.decode() for name, value in headers}


class LineSender:
    """Sends one batch's request lines without awaiting each; at most ``WINDOW`` unconfirmed."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        config: ClientConfig,
        batch_id: str,
        on_published: OnPublished | None = None,
        *,
        project: str | None = None,
        served: ServedModels | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """``project``: named in each record's ``llm-stream-project`` header (none: no
        header, the default project); ``headers``: more on every record (priority, deadline).
        ``served``: each line's model must be served (routing by model), else
        ``ModelNotServedError`` before it is sent."""
        self._producer = producer
        self._config = config
        self._served = served
        self._batch_id = batch_id
        self._headers = [] if project is None else [(PROJECT_HEADER, project.encode())]
        self._headers += headers
        self._on_published = on_published
        self._window: list[asyncio.Future[Any]] = []
        #: Lines the broker has confirmed.
        self.confirmed = 0

    async def send(self, line: Mapping[str, Any]) -> None:
        """Queue ``line`` (with ``batch_id`` added); waits only when the window is full."""
        record = {**line, "batch_id": self._batch_id}
        key = f"{self._batch_id}/{line.get('custom_id')}"
        topic = line_topic(self._config, line)
        if self._served is not None and (model := line_model(line)) is not None:
            await self._served.require([model])
        with telemetry.tracer().start_as_current_span(
            f"send {topic}",
            kind=SpanKind.PRODUCER,
            attributes=telemetry.publish_attributes(topic, key),
        ):
            headers = telemetry.headers_with_context()
            self._window.append(
                await self._producer.send(
                    topic,
                    orjson.dumps(record),
                    key=key.encode(),
                    headers=[(name, value.encode()) for name, value in headers.items()]
                    + self._headers,
                )
            )
        if len(self._window) >= WINDOW:
            await self.flush()

    async def flush(self) -> int:
        """Wait until the broker confirmed every line sent; return the confirmed total."""
        await asyncio.gather(*self._window)
        count = len(self._window)
        self._window.clear()
        self.confirmed += count
        if self._on_published is not None and count:
            self._on_published(count)
        return self.confirmed

    async def abandon(self) -> None:
        """Settle unconfirmed sends, ignoring their outcome: the batch is given up."""
        await asyncio.gather(*self._window, return_exceptions=True)
        self._window.clear()
