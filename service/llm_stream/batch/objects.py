"""The one constructor of OpenAI batch objects, from a batch's manifest and its counts.

``status`` reports a batch the aggregator has not yet seen as ``validating``; the aggregator
reports progress and the final status. Both build the object here, so a field (the expiry, the
metadata, the counts' total) never differs by who reported it.

``input_file_id`` names the batch's input (``file-<batch_id>-input``) although its requests came
over Kafka and no store holds it: OpenAI's clients require one (``openai.types.Batch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import (
    BatchManifest,
    BatchObject,
    RequestCounts,
    completion_window_seconds,
)
from llm_stream.files.store import BatchFile, file_id


def expires_at(manifest: BatchManifest) -> int | None:
    """When the batch's completion window ends (Unix seconds); None without a window."""
    window = completion_window_seconds(manifest.completion_window)
    return None if window is None else manifest.created_at + window


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
) -> BatchObject:
    """The batch object of ``manifest`` in ``status``, with ``completed``/``failed`` requests.

    ``reached_at``: when the batch reached each status it passed through, ``status`` included
    (except ``validating``, whose time is the manifest's ``created_at``); ValueError without it.
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
            **timestamps,
        }
    )
