"""``BatchStatusView``'s pieces that need no broker: a view that is not running says so instead
of answering from nothing, and how a stored row becomes a batch object.

Following the topics (catching up, watching, read-your-writes, compaction) needs a broker: it is
covered by ``tests/integration/test_client.py`` and ``tests/integration/test_status_reads.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.status_index import Row
from llm_stream.client.status_view import (
    BatchStatusView,
    StatusViewStoppedError,
    _batch_of,
    _readable,
)
from llm_stream.contracts import BatchManifest
from tests.unit.client.fakes import CONFIG

MANIFEST = BatchManifest(
    batch_id="b1",
    endpoint="/v1/completions",
    request_count=3,
    metadata={"team": "search"},
    created_at=1_700_000_000,
)
IN_PROGRESS = batch_object(
    MANIFEST,
    BatchStatus.IN_PROGRESS,
    completed=1,
    reached_at={BatchStatus.IN_PROGRESS: 1_700_000_005},
)

Wait = Callable[[BatchStatusView], Awaitable[None]]


async def test_a_view_not_started_knows_no_batch_and_says_it_is_not_following() -> None:
    """Readers get "nothing read" and a reason, not an error, from a view that never ran."""
    view = BatchStatusView(CONFIG)
    view.watch("b1")
    assert view.latest("b1") is None
    assert view.newest(10) == ([], False)
    assert view.batch_ids() == []
    problem = view.problem()
    assert problem is not None
    assert "not running" in problem


async def test_waiting_for_a_change_on_a_view_not_started_raises() -> None:
    """No change will ever come: the caller is told at once instead of waiting forever."""
    view = BatchStatusView(CONFIG)
    with pytest.raises(StatusViewStoppedError):
        await asyncio.wait_for(view.changed(), 5)


@pytest.mark.parametrize(
    "wait",
    [
        BatchStatusView.caught_up,
        BatchStatusView.current,
        lambda view: view.reached({TopicPartition("status", 0): 0}),
    ],
    ids=["caught_up", "current", "reached"],
)
async def test_waiting_for_a_watched_batch_on_a_view_not_started_raises(wait: Wait) -> None:
    """A watched batch's partitions are never assigned by a view that does not run."""
    view = BatchStatusView(CONFIG)
    view.watch("b1")
    with pytest.raises(StatusViewStoppedError, match="not running"):
        await asyncio.wait_for(wait(view), 5)


def test_a_batch_with_only_its_manifest_is_validating() -> None:
    """A manifest is published before the aggregator reports anything of the batch."""
    batch = _batch_of(Row("b1", None, MANIFEST.model_dump_json().encode()))
    assert batch == batch_object(MANIFEST, BatchStatus.VALIDATING)
    assert batch is not None
    assert (batch.id, batch.status, batch.metadata) == ("b1", "validating", {"team": "search"})


def test_a_batch_with_a_status_is_its_latest_status_whatever_its_manifest() -> None:
    """The aggregator's report is newer than the manifest it was built from."""
    status = IN_PROGRESS.model_dump_json().encode()
    assert _batch_of(Row("b1", status, None)) == IN_PROGRESS
    assert _batch_of(Row("b1", status, MANIFEST.model_dump_json().encode())) == IN_PROGRESS
    assert _batch_of(Row("b1", None, None)) is None


def test_an_unreadable_status_raises_for_one_batch_and_is_left_out_of_lists(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One bad record must not break a list of every batch, but is not hidden either."""
    row = Row("b1", b'{"id": "b1", "status": "nonsense"}', None)
    with pytest.raises(ValidationError):
        _batch_of(row)
    with caplog.at_level(logging.WARNING, logger="llm_stream.client.status_view"):
        assert _readable(row) is None
    assert "batch b1: its latest record is not a batch object" in caplog.text
    assert _readable(Row("b2", IN_PROGRESS.model_dump_json().encode(), None)) == IN_PROGRESS
