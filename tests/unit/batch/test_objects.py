from __future__ import annotations

from typing import Any

import pytest

from llm_stream.batch.objects import (
    batch_object,
    cancelling,
    expires_at,
    orphan_manifest,
    timestamp_field,
)
from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus, InvalidTransitionError
from llm_stream.contracts import BatchManifest, BatchObject, BatchUsage

S = BatchStatus
CREATED = 1_700_000_000


def _manifest(**fields: Any) -> BatchManifest:
    defaults: dict[str, Any] = {
        "batch_id": "b-1",
        "endpoint": "/v1/chat/completions",
        "request_count": 3,
        "completion_window": "24h",
        "metadata": {"team": "x"},
        "created_at": CREATED,
    }
    return BatchManifest(**{**defaults, **fields})


def _orphan_manifest() -> BatchManifest:
    """What the aggregator knows of a batch whose manifest never came."""
    return orphan_manifest("orphan", 2, CREATED)


def _openai_validates(batch: BatchObject) -> None:
    import openai.types as openai_types  # a dependency: its absence is a failure, not a skip

    openai_types.Batch.model_validate(batch.model_dump(mode="json"))


def test_expiry_is_creation_plus_the_window() -> None:
    assert expires_at(_manifest()) == CREATED + 86_400
    assert expires_at(_manifest(completion_window="90s")) == CREATED + 90
    assert expires_at(_orphan_manifest()) is None


def test_a_validating_object_has_the_manifests_fields_and_no_progress() -> None:
    batch = batch_object(_manifest(), S.VALIDATING)
    assert batch.status is S.VALIDATING
    assert (batch.id, batch.endpoint, batch.completion_window) == (
        "b-1",
        "/v1/chat/completions",
        "24h",
    )
    assert (batch.created_at, batch.expires_at, batch.in_progress_at) == (
        CREATED,
        CREATED + 86_400,
        None,
    )
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 0}
    assert batch.metadata == {"team": "x"}
    assert batch.input_file_id == "file-b-1-input"  # OpenAI's clients require one
    assert batch.model_dump(mode="json")["status"] == "validating"
    _openai_validates(batch)


def test_an_in_progress_object_carries_its_counts_and_start() -> None:
    batch = batch_object(
        _manifest(), S.IN_PROGRESS, completed=1, failed=1, reached_at={S.IN_PROGRESS: CREATED + 5}
    )
    assert batch.in_progress_at == CREATED + 5
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 1}
    _openai_validates(batch)


@pytest.mark.parametrize("final", [S.COMPLETED, S.EXPIRED])
def test_a_final_object_records_each_status_it_passed(final: BatchStatus) -> None:
    batch = batch_object(
        _manifest(),
        final,
        completed=2,
        failed=1,
        reached_at={S.IN_PROGRESS: CREATED + 1, S.FINALIZING: CREATED + 2, final: CREATED + 3},
        output_file_id="file-b-1-output",
        error_file_id="file-b-1-error",
    )
    document = batch.model_dump(mode="json")
    assert document["status"] == final.value
    assert (document["in_progress_at"], document["finalizing_at"]) == (CREATED + 1, CREATED + 2)
    assert document[f"{final.value}_at"] == CREATED + 3
    assert (document["output_file_id"], document["error_file_id"]) == (
        "file-b-1-output",
        "file-b-1-error",
    )
    _openai_validates(batch)


def test_an_orphan_is_a_failed_object_with_its_error_and_no_expiry() -> None:
    errors = {
        "object": "list",
        "data": [{"code": "missing_manifest", "message": "m", "param": None, "line": None}],
    }
    batch = batch_object(
        _orphan_manifest(),
        S.FAILED,
        completed=2,
        reached_at={S.IN_PROGRESS: CREATED, S.FINALIZING: CREATED, S.FAILED: CREATED + 1},
        output_file_id="file-orphan-output",
        errors=errors,
    )
    assert (batch.status, batch.failed_at, batch.expires_at) == (S.FAILED, CREATED + 1, None)
    assert batch.errors == errors
    _openai_validates(batch)


def test_a_status_without_its_time_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the time it became completed"):
        batch_object(_manifest(), S.COMPLETED, reached_at={S.IN_PROGRESS: CREATED})


def test_every_status_but_validating_has_a_field_of_the_batch_object() -> None:
    for status in set(BatchStatus) - {S.VALIDATING}:
        assert timestamp_field(status) in BatchObject.model_fields
    with pytest.raises(ValueError, match="created_at"):
        timestamp_field(S.VALIDATING)


def test_usage_is_zero_until_told_and_the_model_is_the_manifests_else_the_answers() -> None:
    batch = batch_object(_manifest(), S.VALIDATING)
    assert batch.usage == BatchUsage()
    assert batch.usage.total_tokens == 0
    assert batch.model is None
    answered = batch_object(_manifest(), S.VALIDATING, model="served")
    assert answered.model == "served"
    named = batch_object(_manifest(model="asked"), S.VALIDATING, model="served")
    assert named.model == "asked"
    usage = BatchUsage(input_tokens=3, output_tokens=4, total_tokens=7)
    assert batch_object(_manifest(), S.VALIDATING, usage=usage).usage == usage
    _openai_validates(named)


@pytest.mark.parametrize("status", [S.VALIDATING, S.IN_PROGRESS])
def test_a_batch_asked_to_cancel_keeps_its_latest_object_and_records_when(
    status: BatchStatus,
) -> None:
    reached_at = {} if status is S.VALIDATING else {status: CREATED + 5}
    usage = BatchUsage(input_tokens=1, total_tokens=1)
    latest = batch_object(_manifest(), status, completed=1, reached_at=reached_at, usage=usage)
    asked = cancelling(latest, at=CREATED + 60)
    assert (asked.status, asked.cancelling_at, asked.cancelled_at) == (
        S.CANCELLING,
        CREATED + 60,
        None,
    )
    unchanged = {"status", "cancelling_at"}
    assert asked.model_dump(exclude=unchanged) == latest.model_dump(exclude=unchanged)
    _openai_validates(asked)


@pytest.mark.parametrize("status", sorted({*TERMINAL_STATUSES, S.CANCELLING, S.FINALIZING}))
def test_a_batch_that_cannot_move_to_cancelling_is_refused(status: BatchStatus) -> None:
    latest = batch_object(_manifest(), status, reached_at={status: CREATED})
    with pytest.raises(InvalidTransitionError):
        cancelling(latest, at=CREATED)
