"""The aggregator's core: spool results per batch, write a batch's files once it is complete.

A batch is complete when it holds one result per request of its manifest. Redelivered results
are dropped by ``custom_id``. Offsets of a partition are committed no further than the first
result of the earliest unfinished batch in it, so an aggregator that restarts with no local state
(or replaces another after a rebalance) re-reads everything it needs from the results topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pydantic
from opentelemetry.trace import Link, SpanContext, SpanKind

from service import metrics, telemetry
from service.atomic_files import write_atomically
from service.contracts import (
    BatchManifest,
    BatchObject,
    RequestCounts,
    ResultMessage,
    completion_window_seconds,
)
from service.protocols import IncomingRecord, StatusPublisher
from service.spool import BatchSpool

logger = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]
OUTPUT_FILE, ERROR_FILE, BATCH_FILE = "output.jsonl", "error.jsonl", "batch.json"
_RECENTLY_FINISHED = 10_000


def output_line(result: ResultMessage) -> bytes:
    """The OpenAI batch output line of a result (without the bus's ``batch_id``)."""
    return orjson.dumps(result.model_dump(mode="json", exclude={"batch_id"})) + b"\n"


def _expiry(manifest: BatchManifest) -> int | None:
    window = completion_window_seconds(manifest.completion_window)
    return None if window is None else manifest.created_at + window


@dataclass
class _OpenBatch:
    spool: BatchSpool
    first_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    in_progress_at: int = field(default_factory=lambda: int(time.time()))
    progress_sent_at: float = 0.0
    progress_sent_total: int = -1
    trace_links: list[SpanContext] = field(default_factory=list)


class BatchAggregator:
    """Turns result records and manifests into batch files and batch-status events."""

    def __init__(
        self,
        output_dir: Path,
        status: StatusPublisher,
        *,
        progress_interval: float = 2.0,
        trace_link_limit: int = 1000,
    ) -> None:
        self.output_dir = output_dir
        self._spool_dir = output_dir / ".spool"
        self._status = status
        self._progress_interval = progress_interval
        self._trace_link_limit = trace_link_limit
        self._open: dict[str, _OpenBatch] = {}
        self._manifests: dict[str, BatchManifest] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._high_water: dict[TopicPartitionKey, int] = {}
        self.invalid_results = 0
        self.batches_written = 0
        # Results and manifests arrive from two tasks; one batch must never finalise twice.
        self._lock = asyncio.Lock()
        metrics.OLDEST_OPEN_BATCH_AGE.set_function(self.oldest_open_batch_age)

    def batch_dir(self, batch_id: str) -> Path:
        return self.output_dir / batch_id

    def is_finished(self, batch_id: str) -> bool:
        """True once the batch's files are written (here, or by an earlier aggregator)."""
        if batch_id in self._finished:
            return True
        if (self.batch_dir(batch_id) / BATCH_FILE).exists():
            self._remember_finished(batch_id)
            return True
        return False

    def _remember_finished(self, batch_id: str) -> None:
        self._finished[batch_id] = None
        while len(self._finished) > _RECENTLY_FINISHED:
            self._finished.popitem(last=False)

    @property
    def open_batches(self) -> int:
        return len(self._open)

    def oldest_open_batch_age(self) -> float:
        """Seconds since the oldest open batch got its first result (0 with none open)."""
        if not self._open:
            return 0.0
        return max(0.0, time.time() - min(b.in_progress_at for b in self._open.values()))

    def received(self, batch_id: str) -> int:
        """Distinct results held for an unfinished batch (0 if none yet)."""
        batch = self._open.get(batch_id)
        return batch.spool.total if batch is not None else 0

    async def add_manifest(self, manifest: BatchManifest) -> None:
        async with self._lock:
            await self._add_manifest(manifest)

    async def _add_manifest(self, manifest: BatchManifest) -> None:
        if self.is_finished(manifest.batch_id):
            return
        self._manifests[manifest.batch_id] = manifest
        batch = self._open.get(manifest.batch_id)
        if batch is not None:
            await self._advance(manifest.batch_id, batch)
            metrics.BATCHES_OPEN.set(len(self._open))

    async def add_results(self, records: Sequence[IncomingRecord]) -> None:
        async with self._lock:
            await self._add_results(records)

    async def _add_results(self, records: Sequence[IncomingRecord]) -> None:
        rows: dict[str, list[tuple[str, bool, bytes]]] = {}
        for record in records:
            metrics.RESULTS_RECEIVED.inc()
            partition = record.topic_partition
            self._high_water[partition] = max(self._high_water.get(partition, 0), record.offset + 1)
            result = self._parse(record)
            if result is None:
                continue
            if self.is_finished(result.batch_id):
                metrics.RESULTS_DUPLICATE.inc()
                continue
            batch = self._open_batch(result.batch_id)
            batch.first_offsets.setdefault(partition, record.offset)
            self._trace(record, result, batch)
            rows.setdefault(result.batch_id, []).append(
                (result.custom_id, result.succeeded, output_line(result))
            )
        for batch_id, batch_rows in rows.items():
            batch = self._open[batch_id]
            added = batch.spool.add(batch_rows)
            metrics.RESULTS_DUPLICATE.inc(len(batch_rows) - added)
            await self._advance(batch_id, batch)
        metrics.BATCHES_OPEN.set(len(self._open))

    def _trace(self, record: IncomingRecord, result: ResultMessage, batch: _OpenBatch) -> None:
        """A receive span in the request's trace; remember its context for the finalise link."""
        with telemetry.tracer().start_as_current_span(
            f"receive {record.topic}",
            context=telemetry.context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                **telemetry.messaging_attributes(record, "receive"),
                "llm_stream.batch_id": result.batch_id,
                "llm_stream.custom_id": result.custom_id,
            },
        ) as span:
            context = span.get_span_context()
            if context.is_valid and len(batch.trace_links) < self._trace_link_limit:
                batch.trace_links.append(context)

    def _parse(self, record: IncomingRecord) -> ResultMessage | None:
        try:
            return ResultMessage.model_validate_json(record.value or b"")
        except pydantic.ValidationError as error:
            self.invalid_results += 1
            metrics.RESULTS_INVALID.inc()
            logger.warning(
                "skipping invalid result %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                error.errors(include_url=False)[:1],
            )
            return None

    def _open_batch(self, batch_id: str) -> _OpenBatch:
        batch = self._open.get(batch_id)
        if batch is None:
            batch = self._open[batch_id] = _OpenBatch(
                BatchSpool(self._spool_dir / f"{batch_id}.db")
            )
        return batch

    async def _advance(self, batch_id: str, batch: _OpenBatch) -> None:
        manifest = self._manifests.get(batch_id)
        if manifest is None:
            return
        if batch.spool.total >= manifest.request_count:
            await self._finalize(manifest, batch)
            return
        now = time.monotonic()
        if (
            now - batch.progress_sent_at >= self._progress_interval
            and batch.spool.total != batch.progress_sent_total
        ):
            batch.progress_sent_at, batch.progress_sent_total = now, batch.spool.total
            await self._status.publish_status(self._batch_object(manifest, batch, "in_progress"))

    def _batch_object(
        self, manifest: BatchManifest, batch: _OpenBatch, status: str, **times: int
    ) -> BatchObject:
        return BatchObject.model_validate(
            {
                "id": manifest.batch_id,
                "endpoint": manifest.endpoint,
                "completion_window": manifest.completion_window,
                "status": status,
                "created_at": manifest.created_at,
                "in_progress_at": batch.in_progress_at,
                "expires_at": _expiry(manifest),
                "metadata": manifest.metadata,
                "request_counts": RequestCounts(
                    total=manifest.request_count,
                    completed=batch.spool.completed,
                    failed=batch.spool.failed,
                ),
                **times,
            }
        )

    async def expire_overdue(self, now: float | None = None) -> list[str]:
        """Write the batches whose completion window has passed, with what they hold, as
        ``expired`` (as OpenAI does); their late results are then dropped. Frees the commits
        such a batch was holding back. Returns the expired batch ids."""
        now = time.time() if now is None else now
        async with self._lock:
            overdue = [
                manifest
                for manifest in self._manifests.values()
                if (expiry := _expiry(manifest)) is not None and now >= expiry
            ]
            for manifest in overdue:
                batch = self._open_batch(manifest.batch_id)
                await self._finalize(manifest, batch, status="expired")
            metrics.BATCHES_OPEN.set(len(self._open))
        return [manifest.batch_id for manifest in overdue]

    async def _finalize(
        self, manifest: BatchManifest, batch: _OpenBatch, status: str = "completed"
    ) -> None:
        """Write output, error and batch files atomically (batch.json last: the marker)."""
        with telemetry.tracer().start_as_current_span(
            f"finalize {manifest.batch_id}",
            links=[Link(context) for context in batch.trace_links],
            attributes={
                "llm_stream.batch_id": manifest.batch_id,
                "llm_stream.request_counts.total": manifest.request_count,
                "llm_stream.request_counts.completed": batch.spool.completed,
                "llm_stream.request_counts.failed": batch.spool.failed,
            },
        ):
            await self._write_files(manifest, batch, status)
        metrics.BATCHES_COMPLETED.labels(status).inc()
        metrics.LINES_WRITTEN.labels("output").inc(batch.spool.completed)
        metrics.LINES_WRITTEN.labels("error").inc(batch.spool.failed)

    async def _write_files(self, manifest: BatchManifest, batch: _OpenBatch, status: str) -> None:
        finalizing_at = int(time.time())
        directory = self.batch_dir(manifest.batch_id)
        output, errors = directory / OUTPUT_FILE, directory / ERROR_FILE
        await asyncio.to_thread(write_atomically, output, batch.spool.lines(succeeded=True))
        await asyncio.to_thread(write_atomically, errors, batch.spool.lines(succeeded=False))
        ended = {"completed": "completed_at", "expired": "expired_at"}[status]
        completed = self._batch_object(
            manifest, batch, status, finalizing_at=finalizing_at, **{ended: int(time.time())}
        ).model_copy(
            update={
                "output_file_id": str(output.resolve()),
                "error_file_id": str(errors.resolve()) if batch.spool.failed else None,
            }
        )
        marker = orjson.dumps(completed.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
        # Status before the marker: a crash between the two rewrites the same files and
        # publishes the final status again, rather than leaving the batch without it.
        await self._status.publish_status(completed)
        await asyncio.to_thread(write_atomically, directory / BATCH_FILE, [marker + b"\n"])
        self._forget(manifest.batch_id)
        self._remember_finished(manifest.batch_id)
        self.batches_written += 1
        logger.info(
            "batch %s written (%s): %d completed, %d failed",
            manifest.batch_id,
            status,
            batch.spool.completed,
            batch.spool.failed,
        )

    def _forget(self, batch_id: str) -> None:
        """A written batch: drop its state and its spool."""
        batch = self._open.pop(batch_id, None)
        self._manifests.pop(batch_id, None)
        if batch is not None:
            batch.spool.delete()

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Per partition: the first offset of its earliest unfinished batch, else all it read."""
        offsets = dict(self._high_water)
        for batch in self._open.values():
            for partition, first in batch.first_offsets.items():
                if partition in offsets:
                    offsets[partition] = min(offsets[partition], first)
        return offsets

    def release(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions moved to another aggregator: drop their batches (the spool stays)."""
        released = set(partitions)
        for partition in released:
            self._high_water.pop(partition, None)
        for batch_id, batch in list(self._open.items()):
            if released & set(batch.first_offsets):
                batch = self._open.pop(batch_id)
                batch.spool.close()

    def close(self) -> None:
        for batch in self._open.values():
            batch.spool.close()
        self._open.clear()
