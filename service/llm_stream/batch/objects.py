"""The one constructor of OpenAI batch objects, from a batch's manifest and its counts.

``status`` reports a batch the aggregator has not yet seen as ``validating``; the aggregator
reports progress and the final status. Both build the object here, so a field (the expiry, the
metadata, the counts' total) never differs by who reported it.

A cancel (``cancelling``) is asked for by a client, which has only the latest batch object:
``cancelling`` builds it from that object, so the counts and usage it shows are the latest.

``input_file_id`` names the batch's input (``file-<batch_id>-input``) although its requests came
over Kafka and no store holds it: OpenAI's clients require one (``openai.types.Batch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_stream.batch.status import BatchStatus, check_transition
from llm_stream.contracts import (
    BatchManifest,
    BatchObject,
    BatchUsage,
    RequestCounts,
    completion_window_seconds,
)
from llm_stream.files.store import BatchFile, file_id


def expires_at(manifest: BatchManifest) -> int | None:
    """When the batch's completion window ends (Unix seconds); None without a window."""
    window = completion_window_seconds(manifest.completion_window)
    return None if window is None else manifest.created_at + window


def orphan_manifest(batch_id: str, received: int, first_result_at: int) -> BatchManifest:
    """What is known of a batch whose manifest never came: its id, the results received and
    when the first came. It has no window, so it cannot expire."""
    return BatchManifest.model_construct(
        batch_id=batch_id,
        endpoint="",
        request_count=received,
        completion_window="",
        metadata={},
        created_at=first_result_at,
    )


def timestamp_field(status: BatchStatus) -> str:
    """The batch object's field that records when a batch reached ``status``
    (``validating`` has none of its own: it is ``created_at``)."""
    if status is BatchStatus.VALIDATING:
        raise ValueError("validating has no timestamp of its own: it is created_at")
    return f"{status.value}_at"


def batch_object(
    manifest: BatchManifest,
    status: BatchStatus,
    *,
    completed: int = 0,
    failed: int = 0,
    reached_at: Mapping[BatchStatus, int] | None = None,
    output_file_id: str | None = None,
    error_file_id: str | None = None,
    errors: dict[str, Any] | None = None,
    usage: BatchUsage | None = None,
    model: str | None = None,
) -> BatchObject:
    """The batch object of ``manifest`` in ``status``, with ``completed``/``failed`` requests.

    ``reached_at``: when the batch reached each status it passed through, ``status`` included
    (except ``validating``, whose time is the manifest's ``created_at``); ValueError without it.
    ``usage``: tokens so far (none: 0); ``model``: the manifest's, else the one that answered.
    """
    reached_at = dict(reached_at or {})
    if status is not BatchStatus.VALIDATING and status not in reached_at:
        raise ValueError(f"a {status} batch object needs the time it became {status}")
    timestamps = {timestamp_field(reached): at for reached, at in reached_at.items()}
    return BatchObject.model_validate(
        {
            "id": manifest.batch_id,
            "endpoint": manifest.endpoint,
            "input_file_id": file_id(manifest.batch_id, BatchFile.INPUT),
            "completion_window": manifest.completion_window,
            "status": status,
            "created_at": manifest.created_at,
            "expires_at": expires_at(manifest),
            "metadata": manifest.metadata,
            "request_counts": RequestCounts(
                total=manifest.request_count, completed=completed, failed=failed
            ),
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "errors": errors,
            "model": manifest.model or model,
            "usage": usage or BatchUsage(),
            "project": manifest.project,
            "output_expires_after": manifest.output_expires_after,
            **timestamps,
        }
    )


def cancelling(batch: BatchObject, at: int) -> BatchObject:
    """``batch`` (its latest object) asked to cancel at ``at`` (Unix seconds); the status
    machine's InvalidTransitionError if its status cannot move to ``cancelling``."""
    check_transition(batch.status, BatchStatus.CANCELLING)
    return batch.model_copy(update={"status": BatchStatus.CANCELLING, "cancelling_at": at})


def batch_errors(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """A batch object's ``errors`` with one error not tied to a line (OpenAI's shape)."""
    error = {"code": code, "message": message, "param": param, "line": None}
    return {"object": "list", "data": [error]}
