"""Which batches a history sweep retires: those whose latest status record says they ended
before the retention; a tombstone is a batch retired already. (The sweep itself reads a real
broker: tests/integration/test_history_retirement.py.)"""

from __future__ import annotations

from llm_stream.aggregator.retirement import ended_at, retirable
from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject

CREATED = 1_700_000_000


def _batch(status: BatchStatus, **reached: int) -> BatchObject:
    manifest = BatchManifest(
        batch_id="b1", request_count=1, endpoint="/v1/completions", created_at=CREATED
    )
    times = {BatchStatus(name): at for name, at in reached.items()}
    return batch_object(manifest, status, reached_at=times)


def test_a_batch_ends_when_it_reached_its_terminal_status() -> None:
    assert ended_at(_batch(BatchStatus.COMPLETED, completed=CREATED + 50)) == CREATED + 50
    cancelled = _batch(BatchStatus.CANCELLED, cancelling=CREATED + 5, cancelled=CREATED + 9)
    assert ended_at(cancelled) == CREATED + 9


def test_a_batch_still_open_has_not_ended() -> None:
    assert ended_at(_batch(BatchStatus.IN_PROGRESS, in_progress=CREATED + 1)) is None
    assert ended_at(_batch(BatchStatus.VALIDATING)) is None


def test_a_terminal_batch_with_no_end_time_ended_at_its_creation() -> None:
    batch = _batch(BatchStatus.FAILED, failed=CREATED + 7).model_copy(update={"failed_at": None})
    assert ended_at(batch) == CREATED


def test_only_a_batch_that_ended_before_the_bound_is_retirable() -> None:
    value = _batch(BatchStatus.EXPIRED, expired=CREATED + 100).model_dump_json().encode()
    assert retirable(value, ended_before=CREATED + 101) is True
    assert retirable(value, ended_before=CREATED + 100) is False
    running = _batch(BatchStatus.IN_PROGRESS, in_progress=CREATED).model_dump_json().encode()
    assert retirable(running, ended_before=CREATED + 10**9) is False


def test_a_tombstone_is_none_and_an_unreadable_record_is_kept() -> None:
    assert retirable(None, ended_before=CREATED) is None
    assert retirable(b"not a batch object", ended_before=CREATED + 10**9) is False
