"""``llm-stream submit``: validate a batch input file, then publish its manifest and lines.

Nothing is published unless every line is valid by ``request_line``'s rules, its size under
``Settings.max_message_bytes`` included. Requests are keyed by ``batch_id/custom_id``
so one batch spreads over every requests partition (and so over every worker); results come
back keyed by ``batch_id``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pydantic
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind
from tqdm import tqdm

from llm_stream.batch.input_file import iter_lines, validate_batch_file
from llm_stream.batch.request_line import batch_id_problem
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops import telemetry
from llm_stream.settings import Settings

_WINDOW = 1000  # sends awaited together: throughput without unbounded buffering


@asynccontextmanager
async def kafka_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        enable_idempotence=settings.enable_idempotence,
        acks="all",
        linger_ms=10,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_batch(
    settings: Settings,
    manifest: BatchManifest,
    lines: Iterable[dict[str, Any]],
    progress: tqdm[Any] | None = None,
) -> int:
    """Publish the manifest, then every request line with ``batch_id`` added; return the count."""
    await ensure_topics(settings)
    key = manifest.batch_id.encode()
    sent = 0
    async with kafka_producer(settings) as producer:
        await producer.send_and_wait(
            settings.batches_topic, orjson.dumps(manifest.model_dump(mode="json")), key=key
        )
        window: list[asyncio.Future[Any]] = []
        for line in lines:
            request = {**line, "batch_id": manifest.batch_id}
            message_key = f"{manifest.batch_id}/{line.get('custom_id')}"
            with telemetry.tracer().start_as_current_span(
                f"send {settings.requests_topic}",
                kind=SpanKind.PRODUCER,
                attributes=telemetry.publish_attributes(settings.requests_topic, message_key),
            ):
                headers = telemetry.headers_with_context()
                window.append(
                    await producer.send(
                        settings.requests_topic,
                        orjson.dumps(request),
                        key=message_key.encode(),
                        headers=[(name, value.encode()) for name, value in headers.items()],
                    )
                )
            if len(window) >= _WINDOW:
                sent += await _settle(window, progress)
        sent += await _settle(window, progress)
    return sent


async def _settle(window: list[asyncio.Future[Any]], progress: tqdm[Any] | None) -> int:
    await asyncio.gather(*window)
    count = len(window)
    if progress is not None:
        progress.update(count)
    window.clear()
    return count


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"metadata must be key=value, got {pair!r}")
        metadata[key] = value
    if len(metadata) > 16:
        raise ValueError("at most 16 metadata pairs")
    return metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="OpenAI batch input file (JSONL)")
    parser.add_argument("--batch-id", help="batch id (default: a new batch_<uuid>)")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument("--completion-window", default="24h")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")


def main(args: argparse.Namespace) -> int:
    batch_id = args.batch_id or f"batch_{uuid.uuid4().hex}"
    unsafe = batch_id_problem(batch_id)
    if unsafe is not None:
        print(f"error: {unsafe.message}", file=sys.stderr)
        return 2
    try:
        metadata = parse_metadata(args.metadata)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"error: no such file {args.file}", file=sys.stderr)
        return 2
    settings = Settings().with_overrides(bootstrap_servers=args.bootstrap_servers)
    # Every line's record is sized as it will be published, so none is refused half way.
    check = validate_batch_file(args.file, batch_id=batch_id, max_bytes=settings.max_message_bytes)
    if not check.ok or check.endpoint is None:
        print(f"error: {args.file} is not a valid batch file:\n{check.report()}", file=sys.stderr)
        return 1
    try:
        manifest = BatchManifest(
            batch_id=batch_id,
            endpoint=check.endpoint,
            request_count=check.line_count,
            completion_window=args.completion_window,
            metadata=metadata,
        )
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        print(f"error: invalid batch settings: {problems}", file=sys.stderr)
        return 2
    telemetry.configure_tracing(settings, "llm-stream-submit")
    lines = (orjson.loads(raw) for _, raw in iter_lines(args.file))
    with (
        telemetry.tracer().start_as_current_span(
            f"submit {batch_id}", attributes={"llm_stream.batch_id": batch_id}
        ),
        tqdm(total=check.line_count, unit="req", desc="submit", file=sys.stderr) as progress,
    ):
        asyncio.run(publish_batch(settings, manifest, lines, progress))
    print(batch_id)
    return 0
