"""What an aggregator keeps after reading a long history stays bounded by open work.

A restarted aggregator reads every manifest and every status record still on the compacted
topics. Batches already written leave nothing behind but a bounded memory of recent ids, and
cancels of batches that ended elsewhere are forgotten when their end is read.
"""

from __future__ import annotations

from pathlib import Path

from llm_stream.aggregator.core import BatchAggregator
from llm_stream.batch.objects import batch_object
from llm_stream.batch.recent_ids import RECENT_BATCHES
from llm_stream.batch.status import BatchStatus
from llm_stream.files.store import LocalFileStore
from llm_stream.kafka.cancellations import CancelFollower
from llm_stream.protocols import IncomingRecord
from llm_stream.settings import Settings
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.test_core import TOPIC, _manifest, _result

HISTORY = RECENT_BATCHES + 500  # past every bound


class WrittenBefore(LocalFileStore):
    """A store in which every ``done-*`` batch was written by an earlier run."""

    def is_written(self, batch_id: str) -> bool:
        return batch_id.startswith("done-") or super().is_written(batch_id)


def _ended(batch_id: str, status: BatchStatus) -> IncomingRecord:
    batch = batch_object(_manifest(batch_id, 1), status, reached_at={status: 1})
    return IncomingRecord("status", 0, 0, batch.model_dump_json().encode(), key=batch_id.encode())


async def test_a_long_history_leaves_state_for_open_batches_only(tmp_path: Path) -> None:
    aggregator = BatchAggregator(WrittenBefore(tmp_path), FakeStatusPublisher())
    cancels = CancelFollower(Settings(), aggregator.cancel, on_end=aggregator.batch_ended)
    for number in range(HISTORY):
        batch_id = f"done-{number}"
        await aggregator.add_manifests([_manifest(batch_id, 1)])
        await cancels.apply(_ended(batch_id, BatchStatus.CANCELLING))
        await cancels.apply(_ended(batch_id, BatchStatus.CANCELLED))
    await aggregator.add_manifests([_manifest("open", 2)])
    await aggregator.add_results([IncomingRecord(TOPIC, 0, 0, _result("open", "a"))])
    # A late duplicate of an old batch is dropped without opening anything.
    await aggregator.add_results([IncomingRecord(TOPIC, 0, 1, _result("done-1", "a"))])
    assert aggregator.state_sizes() == {
        "open": 1,
        "manifests": 1,
        "cancelling": 0,
        "finished": RECENT_BATCHES,
    }
    assert len(cancels.cancelled) == RECENT_BATCHES
    assert aggregator.committable() == {(TOPIC, 0): 0}
    aggregator.close()
