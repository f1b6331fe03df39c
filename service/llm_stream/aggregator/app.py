"""``llm-stream aggregator``: results and manifests from Kafka into OpenAI batch files.

Results come through the shared consume loop (consumer group; commits only as far as the
aggregator says is safe); manifests are small and every aggregator reads all of them, from the
start, so whichever instance owns a batch's results partition knows its size. Every aggregator
follows the batch-status topic too, for cancels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from llm_stream.aggregator.core import BatchAggregator
from llm_stream.aggregator.file_expiry import sweep_while_owner, with_default_expiry
from llm_stream.aggregator.retirement import retire_history
from llm_stream.aggregator.stalls import (
    StallReports,
    StallWatch,
    find_stalled,
    stalled_errors,
)
from llm_stream.aggregator.standing_errors import StandingErrors
from llm_stream.aggregator.unserved import UnservedModels, waiting_errors
from llm_stream.batch.recent_ids import RecentIds
from llm_stream.contracts import BatchManifest, parse_manifest
from llm_stream.files.opening import open_store
from llm_stream.kafka.cancellations import CancelFollower
from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.dead_letters import dead_letter_of
from llm_stream.kafka.live_workers import LiveWorkers
from llm_stream.kafka.pending_requests import PendingRequests
from llm_stream.kafka.publishers import KafkaResultPublisher, KafkaStatusPublisher
from llm_stream.kafka.result_scan import CLOCK_MARGIN_MS
from llm_stream.kafka.topic_follower import TopicFollower
from llm_stream.ops import metrics
from llm_stream.ops.metrics import OpenBatchGauges
from llm_stream.protocols import IncomingRecord, TopicPartitionKey
from llm_stream.runtime.role import Role
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Results taken per poll: about a whole fetch. aiokafka asks a partition for more only once its
#: buffered records are all taken, so a poll that empties the buffer lets the next fetch travel
#: while its records are spooled. On 100,000 bench lines (a fetch held ~1,800) the aggregator
#: waited 290 ms in polls of 1,000 and 170 ms in polls of 2,000; 10,000 waited 120 ms but
#: sometimes took a whole 1 MiB response at once, 5 MB more peak memory.
_RESULTS_PER_POLL = 2_000
#: Results spooled per step. Small enough that a step's objects stay in the CPU's cache: with
#: 1,000 the aggregator spent a quarter more CPU per line than with 250 (measured alternately
#: on 100,000 lines; 128 was no better). Per-step costs (one spool transaction, one progress
#: check per batch) are negligible at this size.
_RESULTS_PER_STEP = 250


class _ResultsHandler:
    """The aggregator as the consume loop's ``RecordHandler``."""

    def __init__(self, aggregator: BatchAggregator) -> None:
        self._aggregator = aggregator

    def capacity(self) -> int:
        return _RESULTS_PER_POLL

    async def handle(self, records: Sequence[IncomingRecord]) -> None:
        polled = self._aggregator.releases()  # a revoke between two steps stales the rest
        for start in range(0, len(records), _RESULTS_PER_STEP):
            if start:
                await asyncio.sleep(0)  # the event loop sends the next fetch meanwhile
            step = records[start : start + _RESULTS_PER_STEP]
            await self._aggregator.add_results(step, polled)

    def committable(self) -> Mapping[TopicPartitionKey, int]:
        return self._aggregator.committable()

    async def assigned(self, partitions: Mapping[TopicPartitionKey, int]) -> None:
        """Results of these partitions are taken from now on; a batch's state is rebuilt from
        the records read from here on."""
        self._aggregator.assign(partitions)

    async def revoked(self, partitions: Sequence[TopicPartitionKey]) -> set[TopicPartitionKey]:
        """Forget the partitions (and refuse the rest of a poll that still holds their records);
        a batch with results on a partition kept too is dropped whole: that one is re-read."""
        released = await self._aggregator.release_partitions(partitions)
        return released - set(partitions)

    def holds(self, partition: TopicPartitionKey) -> bool:
        return False  # open batches wait for results legitimately; fetching must not stall


class AggregatorApp(Role):
    """Results into batch files: one consumer-group member of the results topic, following
    the manifests and the cancels beside it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._status = StandingErrors(KafkaStatusPublisher(self.broker, settings))
        self.aggregator = BatchAggregator(
            open_store(settings),
            self._status,
            trace_link_limit=settings.trace_link_limit,
            spool_root=settings.spool_dir,
            orphan_timeout=settings.orphan_batch_timeout_s,
        )
        self.registry.register(
            OpenBatchGauges(
                lambda: self.aggregator.open_batches,
                self.aggregator.oldest_open_batch_age,
                held=self.aggregator.state_sizes,
            )
        )
        self._dead_letters = KafkaResultPublisher(self.broker, settings)
        #: Bad manifests dead-lettered by this run (the most recent: a follower re-reads only
        #: after an error, and never far back).
        self._dead_lettered = RecentIds()
        self.loop = ConsumeLoop(
            settings,
            settings.results_topic,
            settings.aggregator_group_id,
            _ResultsHandler(self.aggregator),
            max_records=_RESULTS_PER_POLL,
        )
        #: How often overdue (expired, orphaned) batches are looked for.
        self.overdue_check_interval_s = 30.0
        self.manifests = TopicFollower(settings, settings.batches_topic, self._add_manifests)
        self.cancels = CancelFollower(
            settings, self.aggregator.cancel, on_end=self.aggregator.batch_ended
        )
        #: Routing by model: what live workers serve, for batches waiting on a model.
        self.live_workers = LiveWorkers()
        self.announcements = TopicFollower(settings, settings.workers_topic, self._heard)
        self.unserved = UnservedModels(self.live_workers, settings.unserved_model_report_s)
        #: Batches reported waiting, with the models they wait for (open batches only).
        self._reported: dict[str, list[str]] = {}
        self.stalls = StallWatch(settings.batch_stall_after_s)
        self.pending = PendingRequests(settings)
        self.stall_reports = StallReports()

    async def _heard(self, records: Sequence[IncomingRecord]) -> None:
        self.live_workers.add(records)

    async def check(self) -> str | None:
        return self.manifests.problem() or self.cancels.problem()

    def watched(self) -> list[Coroutine[Any, Any, Any]]:
        work = [self.manifests.run(), self.cancels.run(), self._close_overdue_periodically()]
        sweeping = self.settings.files_expiry_sweep_s
        work.append(sweep_while_owner(self.aggregator.files, sweeping, self._owns_partition_0))
        if self.settings.batch_retention_s > 0:
            work.append(self._retire_history_periodically())
        if self.settings.route_by_model:
            work += [self.announcements.run(), self._report_unserved_periodically()]
        if self.settings.batch_stall_after_s > 0:
            work.append(self._report_stalls_periodically())
        return work

    async def _report_stalls_periodically(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.settings.batch_stall_check_s)
                try:
                    await self.report_stalls()
                except Exception as error:  # a publish failed: tried again next time
                    logger.warning("reporting stalled batches failed: %r", error)
        finally:
            await self.pending.close()

    async def report_stalls(self) -> None:
        """Read stalled batches' partitions again, report those still stalled after that
        (``aggregator.stalls``), once, and clear a report when a result comes after all."""
        owns = self._owns()
        owned = [m for m in self.aggregator.unwritten() if owns(m.batch_id)]
        received = {m.batch_id: self.aggregator.received(m.batch_id) for m in owned}
        stalled = await find_stalled(self.stalls, owned, received, self.pending.any_pending)
        reread, report, clear = self.stall_reports.decide(stalled, received)
        if reread:
            logger.info(
                "batches %s look stalled: re-reading the results since they were created",
                ", ".join(sorted(reread)),
            )
            self.stalls.restart(reread)
            # From the oldest such batch's creation: its results may lie even below the commits.
            created = min(m.created_at for m in owned if m.batch_id in reread)
            self.loop.reread(since_ms=max(0, created * 1000 - CLOCK_MARGIN_MS))
        for manifest in owned:
            batch_id, count = manifest.batch_id, received[manifest.batch_id]
            if batch_id not in report | clear:
                continue
            quiet_s = self.stalls.quiet_for(batch_id)
            errors = stalled_errors(manifest, count, quiet_s) if batch_id in report else None
            if not await self._report(manifest, errors):
                continue
            if errors is None:
                logger.info("batch %s: results arrive again, no longer stalled", batch_id)
                del self.stall_reports.reported[batch_id]
            else:
                logger.warning(
                    "batch %s stalled: %d of %d requests have no result and none is pending",
                    batch_id,
                    manifest.request_count - count,
                    manifest.request_count,
                    extra={"batch_id": batch_id},
                )
                self.stall_reports.reported[batch_id] = count
        metrics.BATCHES_STALLED.set(len(self.stall_reports.reported))
        self._status.keep_only([m.batch_id for m in owned])

    async def _report_unserved_periodically(self) -> None:
        interval = min(15.0, self.settings.unserved_model_report_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.report_unserved()
            except Exception as error:  # a publish failed: tried again next time
                logger.warning("reporting batches waiting for a model failed: %r", error)

    async def report_unserved(self) -> None:
        """Report owned batches waiting for an absent model (once, and again when the models
        change), and clear the report when their workers are back."""
        if not self.announcements.settled.is_set():
            return
        owns = self._owns()
        owned = [m for m in self.aggregator.unwritten() if owns(m.batch_id)]
        waiting = self.unserved.waiting(owned)
        metrics.BATCHES_WAITING_FOR_MODEL.set(len(waiting))
        for manifest in owned:
            batch_id = manifest.batch_id
            models = waiting.get(batch_id)
            if models == self._reported.get(batch_id):
                continue
            errors = None if models is None else waiting_errors(models, self.unserved.absent_for)
            if not await self._report(manifest, errors):
                continue
            if models is None:
                logger.info("batch %s: the models it waits for are served again", batch_id)
                del self._reported[batch_id]
            else:
                logger.warning(
                    "batch %s waits for %s: no live worker serves it", batch_id, ", ".join(models)
                )
                self._reported[batch_id] = models
        for batch_id in set(self._reported) - {m.batch_id for m in owned}:
            del self._reported[batch_id]  # written, or no longer ours
        self._status.keep_only([m.batch_id for m in owned])

    async def _report(self, manifest: BatchManifest, errors: dict[str, object] | None) -> bool:
        """Publish an open batch's object as it stands with ``errors`` (None: clear them);
        False once it is written (never after its final status)."""
        async with self.aggregator.lock:
            if manifest not in self.aggregator.unwritten():
                return False
            standing = self.aggregator.standing(manifest, errors=errors)
            self._status.hold(standing)
            await self._status.publish_status(standing)
        return True

    async def _add_manifests(self, records: Sequence[IncomingRecord]) -> None:
        """A fetch's manifests, asked of the store together (a restart reads every manifest
        still on the topic: one at a time, that took as long as the history was long)."""
        manifests = []
        for record in records:
            if record.value is None:
                continue  # a retired batch's tombstone
            manifest = parse_manifest(record.value)
            if isinstance(manifest, str):
                await self._dead_letter_manifest(record, f"invalid batch manifest: {manifest}")
            else:
                default_s = self.settings.files_output_expires_after_s
                manifests.append(with_default_expiry(manifest, default_s))
        await self.aggregator.add_manifests(manifests)

    async def _dead_letter_manifest(self, record: IncomingRecord, reason: str) -> None:
        """Every aggregator reads every manifest: each dead-letters a bad one once per run."""
        if f"{record.partition}@{record.offset}" in self._dead_lettered:
            return
        logger.warning(
            "dead-lettering manifest %d@%d: %s", record.partition, record.offset, reason[:200]
        )
        letter = dead_letter_of(record, reason, self.settings.max_message_bytes)
        await self._dead_letters.publish_dead_letter(letter.value, letter.key, letter.headers)
        self._dead_lettered.add(f"{record.partition}@{record.offset}")

    async def _close_overdue_periodically(self) -> None:
        """Write batches whose completion window passed (as expired) and batches whose
        manifest never came (as failed), so their commits stop being held; but only once this
        aggregator has read its partitions (and, for the latter, the manifests) to the end:
        after downtime, a batch's results (or manifest) may be waiting in a topic, unread.
        Only batches of owned partitions."""
        while True:
            await asyncio.sleep(self.overdue_check_interval_s)
            try:
                await self._close_overdue()
            except Exception as error:  # a store or broker error: tried again next time
                logger.warning("closing overdue batches failed: %r", error)

    async def _close_overdue(self) -> None:
        if not await self._caught_up():
            return
        for batch_id in await self.aggregator.expire_overdue(owns=self._owns()):
            logger.warning("batch %s expired before all its results arrived", batch_id)
        # Only once every manifest published so far is read: with much history the manifests
        # may still be coming in long after the results.
        if self.manifests.caught_up:
            for batch_id in await self.aggregator.fail_orphans():
                logger.warning("batch %s failed: its manifest never arrived", batch_id)
        await self.loop.commit_or_retry()

    async def _retire_history_periodically(self) -> None:
        """Tombstones for the owned batches that ended ``batch_retention_s`` ago; a failed
        sweep is logged and tried again at the next interval."""
        while True:
            await asyncio.sleep(self.settings.history_sweep_interval_s)
            try:
                retired = await retire_history(self.settings, self._owns(), now=time.time())
            except Exception as error:
                logger.warning("retiring old batches failed: %r", error)
                continue
            if retired:
                metrics.BATCHES_RETIRED.inc(len(retired))
                logger.info("retired %d batches that ended before the retention", len(retired))

    def _owns(self) -> Callable[[str], bool]:
        """Whether a batch's results partition (the producer's partition of its key) is ours;
        the assignment is read at each call, as a rebalance may come between two batches."""
        consumer = self.consumer
        partitions = sorted(consumer.partitions_for_topic(self.settings.results_topic) or ())
        partitioner = DefaultPartitioner()

        def owns(batch_id: str) -> bool:
            if not partitions:
                return False
            partition = partitioner(batch_id.encode(), partitions, partitions)
            return partition in {tp.partition for tp in consumer.assignment()}

        return owns

    def _owns_partition_0(self) -> bool:
        """Whether this aggregator is the deployment's sweeper of expired files."""
        first = TopicPartition(self.settings.results_topic, 0)
        return first in self.consumer.assignment()

    async def _caught_up(self) -> bool:
        consumer = self.consumer
        if not consumer.assignment():
            return False
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None or await consumer.position(partition) < highwater:
                return False
        return True

    async def run(self) -> int:
        try:
            await self.serve()
        finally:
            self.aggregator.close()
        return 0


async def serve_aggregator(settings: Settings) -> int:
    app = AggregatorApp(settings)
    app.stop_on_signals()
    return await app.run()
