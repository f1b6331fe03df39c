"""``llm-stream status BATCH_ID``: the batch's latest OpenAI batch object, read from Kafka.

Batch objects are keyed by batch id, so only the one partition that key maps to is read. A batch
with a manifest but no status yet is reported as ``validating``. ``--wait`` stops at any terminal
status and says which in its exit code, so a script need not parse the JSON to branch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson
import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from llm_stream.contracts import BatchManifest, BatchObject, RequestCounts, is_safe_batch_id
from llm_stream.settings import Settings


async def _latest_for_key(settings: Settings, topic: str, key: str) -> bytes | None:
    """Value of the last record with ``key`` in ``topic`` (read up to the current end)."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        ordered = sorted(partitions)
        partition = DefaultPartitioner()(key.encode(), ordered, ordered)
        assigned = TopicPartition(topic, partition)
        consumer.assign([assigned])
        await consumer.seek_to_beginning(assigned)
        end = (await consumer.end_offsets([assigned]))[assigned]
        latest: bytes | None = None
        while await consumer.position(assigned) < end:
            batches = await consumer.getmany(assigned, timeout_ms=1000)
            for record in batches.get(assigned, []):
                if record.key == key.encode():
                    latest = record.value
        return latest
    finally:
        await consumer.stop()


async def fetch_batch(settings: Settings, batch_id: str) -> BatchObject | None:
    status = await _latest_for_key(settings, settings.batch_status_topic, batch_id)
    if status is not None:
        return BatchObject.model_validate_json(status)
    manifest_value = await _latest_for_key(settings, settings.batches_topic, batch_id)
    if manifest_value is None:
        return None
    manifest = BatchManifest.model_validate_json(manifest_value)
    return BatchObject(
        id=batch_id,
        endpoint=manifest.endpoint,
        completion_window=manifest.completion_window,
        status="validating",
        created_at=manifest.created_at,
        request_counts=RequestCounts(total=manifest.request_count, completed=0, failed=0),
        metadata=manifest.metadata,
    )


#: OpenAI batch statuses after which a batch never changes again.
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})

#: ``status --wait`` exit codes, one per terminal status, so scripts can branch without JSON.
EXIT_CODES: dict[str, int] = {"completed": 0, "failed": 4, "expired": 5, "cancelled": 6}
EXIT_NO_BATCH = 1
EXIT_USAGE = 2
EXIT_NOT_TERMINAL = 3

EPILOG = f"""\
exit codes:
  {EXIT_CODES["completed"]}  printed the batch (with --wait: it completed)
  {EXIT_NO_BATCH}  no such batch, or its batch object is unreadable
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_NOT_TERMINAL}  --wait: the batch was still not finished when SECONDS ran out
  {EXIT_CODES["failed"]}  --wait: the batch failed
  {EXIT_CODES["expired"]}  --wait: the batch expired (its completion window passed)
  {EXIT_CODES["cancelled"]}  --wait: the batch was cancelled
"""


def is_terminal(batch: BatchObject | None) -> bool:
    return batch is not None and batch.status in TERMINAL_STATUSES


def exit_code(batch: BatchObject | None, *, waited: bool) -> int:
    """The command's exit code for what it printed (see ``EPILOG``)."""
    if batch is None:
        return EXIT_NO_BATCH
    if not waited:
        return 0
    return EXIT_CODES.get(batch.status, EXIT_NOT_TERMINAL)


async def wait_until_terminal(
    settings: Settings, batch_id: str, within: float, poll_every: float = 1.0
) -> BatchObject | None:
    """Poll until the batch reaches a terminal status or ``within`` seconds pass; return the
    last batch object read (None if the batch never appeared)."""
    deadline = time.monotonic() + within
    while True:
        batch = await fetch_batch(settings, batch_id)
        left = deadline - time.monotonic()
        if is_terminal(batch) or left <= 0:
            return batch
        await asyncio.sleep(min(poll_every, left))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("batch_id")
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for a final status (completed, failed, expired, cancelled)",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")


def main(args: argparse.Namespace) -> int:
    if not is_safe_batch_id(args.batch_id):
        print(f"error: unsafe batch id {args.batch_id!r}", file=sys.stderr)
        return EXIT_USAGE
    settings = Settings().with_overrides(bootstrap_servers=args.bootstrap_servers)
    try:
        if args.wait is not None:
            batch = asyncio.run(wait_until_terminal(settings, args.batch_id, args.wait))
        else:
            batch = asyncio.run(fetch_batch(settings, args.batch_id))
    except pydantic.ValidationError as error:
        print(f"error: unreadable batch object: {error}", file=sys.stderr)
        return EXIT_NO_BATCH
    if batch is None:
        print(f"error: no batch {args.batch_id!r}", file=sys.stderr)
        return EXIT_NO_BATCH
    sys.stdout.write(
        orjson.dumps(batch.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode()
    )
    sys.stdout.write("\n")
    return exit_code(batch, waited=args.wait is not None)
