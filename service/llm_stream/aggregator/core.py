"""The aggregator's core: spool results per batch, write a batch's files once it is complete.

A batch is complete when it holds one result per request of its manifest; redelivered results
are dropped by ``custom_id``. Offsets of a partition are committed no further than the first
result of the earliest unfinished batch in it, so an aggregator that restarts with no local state
(or replaces another after a rebalance) re-reads everything it needs from the results topic.

Nothing a topic carries holds commits forever: an overdue batch is written as ``expired`` (by
the owner of its results partition only), one whose manifest never came as ``failed``. A batch
another aggregator wrote (its file store holds its batch object) is never written again. A
cancelled batch still gets a line per request (``batch_cancelled`` for what did not run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import orjson

from llm_stream.aggregator.open_batch import OpenBatch, ending, progress_status
from llm_stream.aggregator.partition_marks import PartitionMarks
from llm_stream.aggregator.result_records import parse_result
from llm_stream.aggregator.spool import PrivateSpool
from llm_stream.aggregator.written import republish_written, store_spooled_files
from llm_stream.batch.objects import batch_errors, batch_object, expires_at, orphan_manifest
from llm_stream.batch.recent_ids import RecentIds
from llm_stream.batch.result_lines import BATCH_CANCELLED
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject, ResultMessage
from llm_stream.files.store import BatchFile, FileStore
from llm_stream.ops import metrics, telemetry
from llm_stream.protocols import IncomingRecord, StatusPublisher, TopicPartitionKey

logger = logging.getLogger(__name__)

#: Manifests taken under one hold of the lock: results wait little behind a restart's manifests.
_MANIFEST_CHECKS = 64
#: Store checks run at once (in the default executor's threads).
_STORE_CHECKS = 8


class BatchAggregator:
    """Turns result records and manifests into batch files and batch-status events."""

    def __init__(
        self,
        files: FileStore,
        status: StatusPublisher,
        *,
        progress_interval: float = 2.0,
        trace_link_limit: int = 1000,
        spool_root: Path | None = None,
        orphan_timeout: float = 3600.0,
    ) -> None:
        self.files = files
        self._status = status
        self._progress_interval = progress_interval
        self._trace_link_limit = trace_link_limit
        self._orphan_timeout = orphan_timeout
        self._spool = PrivateSpool(spool_root)
        self._open: dict[str, OpenBatch] = {}
        self._manifests: dict[str, BatchManifest] = {}
        #: When each unwritten batch was asked to cancel, open here or not (yet).
        self._cancelling: dict[str, int] = {}
        self._finished = RecentIds()
        self._marks = PartitionMarks()
        self.batches_written = 0
        # Results, manifests, timers and rebalances come from several tasks: one at a time.
        self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held by every coroutine method; hold it to call ``release`` from another task."""
        return self._lock

    def is_finished(self, batch_id: str) -> bool:
        """True once the batch's files are written (here, or by an earlier aggregator)."""
        return batch_id in self._finished or self.files.is_written(batch_id)

    async def _is_finished(self, batch_id: str, remember: bool = True) -> bool:
        """``is_finished``, the store asked off the event loop (on S3, an HTTP request) and a
        yes remembered on it (threads never touch the aggregator's state)."""
        if batch_id in self._finished:
            return True
        if (written := await asyncio.to_thread(self.files.is_written, batch_id)) and remember:
            self._finished.add(batch_id)
        return written

    @property
    def open_batches(self) -> int:
        return len(self._open)

    def state_sizes(self) -> dict[str, int]:
        """How many batches each piece of state holds: it must follow open work, not history."""
        held: dict[str, Sized] = {"open": self._open, "manifests": self._manifests}
        held |= {"cancelling": self._cancelling, "finished": self._finished}
        return {name: len(state) for name, state in held.items()}

    def batch_ended(self, batch: BatchObject) -> None:
        """A terminal batch object on the status topic: a cancel kept for a batch neither open
        nor announced here (owned elsewhere, or long done) is not needed any more."""
        if batch.id not in self._open and batch.id not in self._manifests:
            self._cancelling.pop(batch.id, None)

    def oldest_open_batch_age(self) -> float:
        """Seconds since the oldest open batch got its first result (0 with none open)."""
        starts = [batch.in_progress_at for batch in list(self._open.values())]  # metrics thread
        return max(0.0, time.time() - min(starts)) if starts else 0.0

    def unwritten(self) -> list[BatchManifest]:  # the manifests of batches not written yet
        return list(self._manifests.values())

    def standing(self, manifest: BatchManifest, **fields: Any) -> BatchObject:
        """An unwritten batch's object as it stands (validating until its first result)."""
        batch = self._open.get(manifest.batch_id)
        if batch is None:
            return batch_object(manifest, BatchStatus.VALIDATING, **fields)
        status = progress_status(self._cancelling.get(manifest.batch_id))
        return self._batch_object(manifest, batch, status, **fields)

    def received(self, batch_id: str) -> int:
        """Distinct results held for an unfinished batch (0 if none yet)."""
        return self._spool.total(batch_id) if batch_id in self._open else 0

    async def add_manifests(self, manifests: Sequence[BatchManifest]) -> None:
        """Hold the manifests of batches not written yet; the store is asked about them
        together, ``_MANIFEST_CHECKS`` at a time."""
        for start in range(0, len(manifests), _MANIFEST_CHECKS):
            step = manifests[start : start + _MANIFEST_CHECKS]
            async with self._lock:
                # Written batches' manifests are history: remembering them would save nothing.
                ids = {manifest.batch_id for manifest in step}
                written = await self._written_among(ids, remember=False)
                for manifest in step:
                    batch_id = manifest.batch_id
                    if batch_id in written:
                        if batch_id in self._open:  # another aggregator wrote it meanwhile
                            await self._forget(batch_id)
                        continue
                    self._manifests[batch_id] = manifest
                    if (batch := self._open.get(batch_id)) is not None:
                        await self._advance(batch_id, batch)

    async def add_results(
        self,
        records: Sequence[IncomingRecord],
        polled: Mapping[TopicPartitionKey, int] | None = None,
    ) -> None:
        """Spool a poll's results and write the batches they complete. If it raises,
        ``committable()`` is still safe (an unwritten batch holds its first offset), but some
        records may not be spooled: ``release`` their partitions and re-read them. ``polled``:
        ``releases()`` when the records were fetched (default: now).

        ``committable()`` is read without the lock (by the periodic and the rebalance commit),
        so the commit point moves only in one step with nothing awaited inside it: high-water
        marks, new batches' first offsets and the spooled rows together. Everything that
        awaits (asking the store whether a new batch was written) comes before that step."""
        tracing = telemetry.tracing_enabled()
        async with self._lock:
            metrics.RESULTS_RECEIVED.inc(len(records))
            records = self._marks.owned(records, self.releases() if polled is None else polled)
            parsed = [(record, parse_result(record)) for record in records]
            new_ids = {p[0].batch_id for _, p in parsed if p and p[0].batch_id not in self._open}
            written = await self._written_among(new_ids)
            # -- from here to the end of the spooling, nothing is awaited --
            rows: dict[str, list[tuple[str, bool, bytes]]] = {}
            results: dict[str, list[ResultMessage]] = {}
            for record, result_and_line in parsed:
                partition, offset = record.topic_partition, record.offset
                self._marks.read(partition, offset)
                if result_and_line is None:
                    continue
                result, line = result_and_line
                if result.batch_id in written:
                    metrics.RESULTS_DUPLICATE.inc()
                    continue
                batch = self._open.get(result.batch_id)
                if batch is None:
                    batch = self._open[result.batch_id] = OpenBatch()
                first = batch.first_offsets.get(partition, offset)
                batch.first_offsets[partition] = min(first, offset)
                if result.error is not None and result.error.code == BATCH_CANCELLED:
                    self._cancel_seen_in_a_line(result.batch_id)
                if tracing:
                    batch.trace(record, result, self._trace_link_limit)
                rows.setdefault(result.batch_id, []).append(
                    (result.custom_id, result.succeeded, line)
                )
                results.setdefault(result.batch_id, []).append(result)
            for batch_id, batch_rows in rows.items():
                batch = self._open[batch_id]
                new = self._spool.insert(batch_id, batch_rows)
                if len(new) < len(batch_rows):
                    metrics.RESULTS_DUPLICATE.inc(len(batch_rows) - len(new))
                batch.count(results[batch_id][position] for position in new)
            # -- the commit point and the spool agree again: writing may await --
            for batch_id in rows:
                if (batch := self._open.get(batch_id)) is not None:
                    await self._advance(batch_id, batch)

    async def _written_among(self, batch_ids: set[str], remember: bool = True) -> set[str]:
        """The batches among ``batch_ids`` whose files are written, asked of the store together,
        ``_STORE_CHECKS`` at a time (an S3 client pools ten connections)."""
        ids, written = sorted(batch_ids), set()
        for start in range(0, len(ids), _STORE_CHECKS):
            step = ids[start : start + _STORE_CHECKS]
            asked = (self._is_finished(batch_id, remember) for batch_id in step)
            answers = await asyncio.gather(*asked)
            written |= {batch_id for batch_id, yes in zip(step, answers, strict=True) if yes}
        return written

    def _cancel_seen_in_a_line(self, batch_id: str) -> None:
        """Workers answer ``batch_cancelled`` only after the cancel, which may reach the cancel
        follower here after the batch's last line: the batch ends ``cancelled`` either way."""
        if batch_id not in self._cancelling:
            self._cancelling[batch_id] = int(time.time())

    async def cancel(self, asked: BatchObject) -> None:
        """A batch was asked to cancel (``asked``: its first cancelling object): it reports
        ``cancelling`` from now on, at once if open here, and is written ``cancelled``. A cancel
        that came after the batch was written changes nothing: its written object is published
        again, so that the status topic does not end on ``cancelling``."""
        async with self._lock:
            if await self._is_finished(asked.id):
                if asked.status is BatchStatus.CANCELLING:
                    await republish_written(self.files, self._status, asked.id)
                return
            self._cancelling[asked.id] = asked.cancelling_at or int(time.time())
            if (batch := self._open.get(asked.id)) is not None:
                batch.report_progress_now()  # it may have said in_progress after the cancel
                try:
                    await self._advance(asked.id, batch)
                except Exception as error:  # written with its next result, or at its expiry
                    logger.warning("batch %s not advanced on its cancel: %r", asked.id, error)

    async def _advance(self, batch_id: str, batch: OpenBatch) -> None:
        manifest = self._manifests.get(batch_id)
        if manifest is None:
            return
        total = self._spool.total(batch_id)
        if total >= manifest.request_count:
            await self._write(manifest, BatchStatus.COMPLETED)
            return
        if batch.progress_due(total, self._progress_interval):
            status = progress_status(self._cancelling.get(batch_id))
            progress = self._batch_object(manifest, batch, status)
            try:
                await self._status.publish_status(progress)
            except Exception as error:  # progress is best effort; the final status is not
                logger.warning("progress of batch %s not published: %r", batch_id, error)

    def _batch_object(
        self, manifest: BatchManifest, batch: OpenBatch, status: BatchStatus, **fields: Any
    ) -> BatchObject:
        spool, batch_id = self._spool, manifest.batch_id
        counts = (spool.completed(batch_id), spool.failed(batch_id))
        return batch.batch_object(manifest, status, self._cancelling.get(batch_id), counts, fields)

    async def expire_overdue(
        self, now: float | None = None, *, owns: Callable[[str], bool]
    ) -> list[str]:
        """Write owned batches whose completion window passed as ``expired`` (``cancelled`` if
        asked to cancel), with what they hold (as OpenAI does), freeing their commits; later
        results are dropped. ``owns``: the batch's results partition is assigned here. Returns
        the ids of the batches written."""
        now = time.time() if now is None else now
        expired: list[str] = []
        expiries = [(m, expires_at(m)) for m in list(self._manifests.values())]
        overdue = [m for m, expiry in expiries if expiry is not None and now >= expiry]
        for manifest in overdue:
            batch_id = manifest.batch_id
            async with self._lock:  # a batch at a time: polls are handled in between
                if self._manifests.get(batch_id) is not manifest:
                    continue  # written (or announced again) meanwhile
                if owns(batch_id):
                    if await self._write(manifest, BatchStatus.EXPIRED):
                        expired.append(batch_id)
                elif batch_id not in self._open and await self._is_finished(batch_id):
                    del self._manifests[batch_id]  # its owner wrote it: stop remembering it
                    self._cancelling.pop(batch_id, None)
        return expired

    def _orphaned(self, batch_id: str, now: float) -> bool:
        batch = self._open.get(batch_id)
        if batch is None or batch_id in self._manifests:
            return False
        return now - batch.in_progress_at > self._orphan_timeout

    async def fail_orphans(self, now: float | None = None) -> list[str]:
        """Write every open batch whose manifest has not come ``orphan_timeout`` seconds after
        its first result as ``failed`` (error ``missing_manifest``), with the lines it holds,
        so that it stops holding back its partitions' commits. Returns the failed batch ids."""
        now = time.time() if now is None else now
        failed: list[str] = []
        for batch_id in [
            batch_id for batch_id in list(self._open) if self._orphaned(batch_id, now)
        ]:
            async with self._lock:  # a batch at a time: polls are handled in between
                if not self._orphaned(batch_id, now):
                    continue
                message = f"no manifest within {self._orphan_timeout:g} s of the first result"
                errors = batch_errors("missing_manifest", message)
                manifest = orphan_manifest(
                    batch_id, self._spool.total(batch_id), self._open[batch_id].in_progress_at
                )
                if await self._write(manifest, BatchStatus.FAILED, errors=errors):
                    failed.append(batch_id)
        return failed

    async def _write(
        self, manifest: BatchManifest, status: BatchStatus, errors: dict[str, Any] | None = None
    ) -> bool:
        """Store the batch's files (its batch object last: the marker) unless another aggregator
        did. Storing them is the batch's ``finalizing``: ``status`` is the one that ends it,
        unless the batch was asked to cancel: then it ends ``cancelled``, from ``cancelling``."""
        batch_id = manifest.batch_id
        via, status = ending(status, self._cancelling.get(batch_id))
        if await asyncio.to_thread(self.files.is_written, batch_id):
            logger.warning("batch %s was written by another aggregator: not again", batch_id)
            await self._forget(batch_id)
            return False
        batch = self._open.get(batch_id) or OpenBatch()  # expired with no result at all
        completed, failed = self._spool.completed(batch_id), self._spool.failed(batch_id)
        with batch.finalize_span(batch_id, manifest.request_count, completed, failed):
            # A cancelled batch's way there is its cancel (``_batch_object`` adds its time).
            reached: dict[BatchStatus, int] = {}
            if via is BatchStatus.FINALIZING:
                reached[via] = int(time.time())
            output_id, error_id = await asyncio.to_thread(
                store_spooled_files, self.files, self._spool, manifest, with_errors=failed > 0
            )
            final = self._batch_object(
                manifest,
                batch,
                status,
                reached_at={**reached, status: int(time.time())},
                errors=errors,
                output_file_id=output_id,
                error_file_id=error_id,
            )
            marker = orjson.dumps(final.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
            # Status before the marker: a crash between the two rewrites the files and publishes
            # the status again; a failed publish leaves the batch open, holding its commits.
            await self._status.publish_status(final)
            await asyncio.to_thread(self.files.write, batch_id, BatchFile.BATCH, [marker + b"\n"])
        await self._forget(batch_id)
        self.batches_written += 1
        metrics.BATCHES_COMPLETED.labels(status).inc()
        metrics.LINES_WRITTEN.labels("output").inc(completed)
        metrics.LINES_WRITTEN.labels("error").inc(failed)
        logger.info("batch %s written (%s): %d ok, %d failed", batch_id, status, completed, failed)
        return True

    async def _forget(self, batch_id: str) -> None:  # a written batch: state and spool dropped
        for state in (self._open, self._manifests, self._cancelling):
            state.pop(batch_id, None)
        self._finished.add(batch_id)
        await asyncio.to_thread(self._spool.drop, batch_id)

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Per partition: the first offset of its earliest unfinished batch, else all it read."""
        return self._marks.committable(self._open.values())

    def releases(self) -> dict[TopicPartitionKey, int]:
        """How often each partition was released so far: taken with a poll (``add_results``)."""
        return self._marks.releases()

    def assign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Results of ``partitions`` are taken from now on (until ``release``)."""
        self._marks.assign(partitions)

    def release(self, partitions: Iterable[TopicPartitionKey]) -> set[TopicPartitionKey]:
        """Forget what was read from ``partitions`` (open batches, spooled rows, marks); a
        batch with results elsewhere too is dropped whole, those partitions with it. Returns
        every partition released (the caller re-reads those it holds from their commits);
        results of ``partitions`` are refused until ``assign``. Call it holding ``lock``."""
        released, dropped = self._marks.release(set(partitions), self._open)
        for batch_id in dropped:
            del self._open[batch_id]
            self._spool.drop(batch_id)
        return released

    async def release_partitions(
        self, partitions: Iterable[TopicPartitionKey]
    ) -> set[TopicPartitionKey]:
        """``release`` under the aggregator's lock (after a write in progress)."""
        async with self._lock:
            return self.release(partitions)

    def close(self) -> None:
        """Drop all state and delete this process's spool (idempotent)."""
        self._open.clear()
        self._spool.close()
