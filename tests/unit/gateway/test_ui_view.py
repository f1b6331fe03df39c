"""What the web page shows of a batch, formatted in one place: times in UTC, whole percents,
counts and tokens as text, milestones in the order reached."""

from __future__ import annotations

from typing import Any

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchUsage
from llm_stream.gateway.models import Batch
from llm_stream.gateway.ui_view import BatchView, iso, when

CREATED = 1_700_000_000


def _view(status: BatchStatus, total: int = 4, **fields: Any) -> BatchView:
    manifest = BatchManifest(
        batch_id="b1", request_count=max(total, 1), endpoint="/v1/completions", created_at=CREATED
    )
    reached = fields.pop("reached_at", {status: CREATED + 60})
    batch = batch_object(manifest, status, reached_at=reached, **fields)
    shown = Batch.of(batch, "file-upload")
    if total == 0:  # no manifest carries 0 requests; a batch object may (an empty file)
        counts = shown.request_counts.model_copy(update={"total": 0})
        shown = shown.model_copy(update={"request_counts": counts})
    return BatchView(shown)


def test_times_are_utc_text_and_iso_and_none_is_shown_as_such() -> None:
    assert when(0) == "1970-01-01 00:00:00 UTC"
    assert iso(CREATED) == "2023-11-14T22:13:20Z"
    assert (when(None), iso(None)) == ("—", "")


def test_progress_is_whole_percent_of_requests_answered() -> None:
    view = _view(BatchStatus.IN_PROGRESS, total=3, completed=1, failed=1)
    assert (view.done, view.total, view.percent) == (2, 3, 66)
    assert view.requests == "1 completed, 1 failed of 3"
    assert not view.terminal


def test_answers_past_the_total_never_show_more_than_done() -> None:
    view = _view(BatchStatus.IN_PROGRESS, total=2, completed=3)
    assert (view.done, view.percent) == (2, 100)


def test_a_batch_with_no_requests_is_done_only_once_it_ended() -> None:
    assert _view(BatchStatus.COMPLETED, total=0).percent == 100
    assert _view(BatchStatus.IN_PROGRESS, total=0).percent == 0


def test_only_a_batch_that_may_still_be_cancelled_offers_it() -> None:
    assert _view(BatchStatus.IN_PROGRESS).can_cancel
    assert not _view(BatchStatus.COMPLETED).can_cancel
    assert not _view(BatchStatus.CANCELLING).can_cancel


def test_tokens_are_in_out_and_total() -> None:
    usage = BatchUsage.model_validate(
        {
            "input_tokens": 5,
            "output_tokens": 7,
            "total_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    )
    assert _view(BatchStatus.IN_PROGRESS, usage=usage).tokens == "5 in, 7 out, 12 total"


def test_milestones_are_in_time_order_with_the_expiry_last() -> None:
    reached = {
        BatchStatus.IN_PROGRESS: CREATED + 10,
        BatchStatus.CANCELLING: CREATED + 20,
        BatchStatus.CANCELLED: CREATED + 30,
    }
    view = _view(BatchStatus.CANCELLED, reached_at=reached)
    labels = [label for label, _ in view.milestones]
    assert labels == ["Created", "In progress", "Cancelling", "Cancelled", "Expires"]
    assert view.finished_at == CREATED + 30
    assert _view(BatchStatus.IN_PROGRESS).finished_at is None


def test_line_errors_are_the_entries_of_errors_data() -> None:
    errors = {"object": "list", "data": [{"code": "invalid_line", "line": 2}, "not an entry"]}
    view = _view(BatchStatus.FAILED, errors=errors)
    assert view.line_errors == [{"code": "invalid_line", "line": 2}]
    assert _view(BatchStatus.IN_PROGRESS).line_errors == []


def test_the_polled_progress_holds_what_a_row_shows() -> None:
    view = _view(BatchStatus.COMPLETED, total=2, completed=2)
    progress = view.progress()
    assert progress["id"] == "b1"
    assert progress["status"] == "completed"
    assert (progress["terminal"], progress["percent"]) == (True, 100)
    assert progress["finished"] == when(CREATED + 60)
    assert progress["requests"] == view.requests
