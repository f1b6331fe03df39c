"""An open batch: the status it reports, how it ends (a cancelled batch keeps what finished),
its tokens and model counted once per result, and how often its progress goes out."""

from __future__ import annotations

from typing import Any

import pytest

from llm_stream.aggregator.open_batch import OpenBatch, ending, progress_status
from llm_stream.batch.result_lines import result_message
from llm_stream.batch.status import BatchStatus, InvalidTransitionError
from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage


def _answer(custom_id: str, body: dict[str, Any] | None) -> ResultMessage:
    status = 200 if body is not None else 500
    return result_message(
        "b1", custom_id, ResponseData(status_code=status, request_id="", body=body)
    )


@pytest.mark.parametrize(
    ("status", "cancelling_at", "passes", "ends"),
    [
        (BatchStatus.COMPLETED, None, BatchStatus.FINALIZING, BatchStatus.COMPLETED),
        (BatchStatus.EXPIRED, None, BatchStatus.FINALIZING, BatchStatus.EXPIRED),
        (BatchStatus.FAILED, None, BatchStatus.FINALIZING, BatchStatus.FAILED),
        (BatchStatus.COMPLETED, 5, BatchStatus.CANCELLING, BatchStatus.CANCELLED),
        (BatchStatus.EXPIRED, 5, BatchStatus.CANCELLING, BatchStatus.CANCELLED),
        # No manifest, so nobody could have asked to cancel it: it fails as it would.
        (BatchStatus.FAILED, 5, BatchStatus.FINALIZING, BatchStatus.FAILED),
    ],
)
def test_a_batch_asked_to_cancel_ends_cancelled_any_other_as_decided(
    status: BatchStatus, cancelling_at: int | None, passes: BatchStatus, ends: BatchStatus
) -> None:
    assert ending(status, cancelling_at) == (passes, ends)


def test_an_end_the_status_machine_forbids_is_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        ending(BatchStatus.IN_PROGRESS, None)


def test_progress_is_in_progress_until_a_cancel_is_asked() -> None:
    assert progress_status(None) is BatchStatus.IN_PROGRESS
    assert progress_status(1_700_000_000) is BatchStatus.CANCELLING


def test_tokens_are_summed_and_the_model_is_the_first_that_answered() -> None:
    batch = OpenBatch()
    batch.count(
        [
            _answer("a", None),
            _answer("b", {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
            _answer("c", {"model": "tiny", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
        ]
    )
    batch.count([_answer("d", {"model": "other"})])
    usage = batch.usage.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (4, 6, 10)
    assert batch.model == "tiny"


def test_progress_goes_out_once_per_interval_and_only_when_it_moved() -> None:
    batch = OpenBatch()
    assert batch.progress_due(total=1, interval=0.0)
    assert not batch.progress_due(total=1, interval=0.0)  # nothing new to tell
    assert batch.progress_due(total=2, interval=0.0)
    assert not batch.progress_due(total=3, interval=3600.0)  # too soon
    batch.report_progress_now()  # its status changed: tell at once
    assert batch.progress_due(total=3, interval=3600.0)


def _manifest() -> BatchManifest:
    return BatchManifest(
        batch_id="b1", request_count=3, endpoint="/v1/completions", created_at=1_700_000_000
    )


def test_its_object_is_in_progress_from_its_first_result_with_its_counts() -> None:
    batch = OpenBatch(in_progress_at=1_700_000_010)
    shown = batch.batch_object(_manifest(), BatchStatus.IN_PROGRESS, None, (2, 1), {})
    assert (shown.status, shown.in_progress_at) == (BatchStatus.IN_PROGRESS, 1_700_000_010)
    counts = shown.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)


def test_a_cancelled_object_shows_when_it_was_asked_and_when_it_ended() -> None:
    batch = OpenBatch(in_progress_at=1_700_000_010)
    fields: dict[str, Any] = {"reached_at": {BatchStatus.CANCELLED: 1_700_000_030}}
    shown = batch.batch_object(_manifest(), BatchStatus.CANCELLED, 1_700_000_020, (1, 0), fields)
    assert (shown.cancelling_at, shown.cancelled_at) == (1_700_000_020, 1_700_000_030)
    still = batch.batch_object(_manifest(), BatchStatus.IN_PROGRESS, 1_700_000_020, (1, 0), {})
    assert still.cancelling_at is None  # only a cancelled status carries it here
