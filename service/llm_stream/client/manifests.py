"""A new batch's id and manifest: one place builds both, for the client, ``submit``, the
gateway and ``run-batch``."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping

from llm_stream.client.config import DEFAULT_MAX_COMPLETION_WINDOW_S
from llm_stream.contracts import (
    MAX_COMPLETION_WINDOW_CONTEXT,
    BatchManifest,
    ExpiresAfter,
    stored_project,
)

__all__ = ["build_manifest", "new_batch_id"]


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def build_manifest(
    batch_id: str,
    *,
    endpoint: str,
    request_count: int,
    metadata: Mapping[str, str] | None = None,
    completion_window: str = "24h",
    model: str | None = None,
    max_completion_window_s: int = DEFAULT_MAX_COMPLETION_WINDOW_S,
    project: str | None = None,
    models: Collection[str] | None = None,
    input_tokens: Mapping[str, int] | None = None,
    output_expires_after: ExpiresAfter | None = None,
) -> BatchManifest:
    """A new batch's manifest, of ``project`` (None or the default one: recorded as none);
    ``models``: every model its lines name, recorded only when there are several;
    ``input_tokens``: the lines' estimated input tokens by model, when counted;
    ``output_expires_after``: when its output and error files expire (None: the default).
    pydantic's ValidationError names every bad setting, a completion window longer than
    ``max_completion_window_s`` too."""
    fields = {
        "batch_id": batch_id,
        "endpoint": endpoint,
        "request_count": request_count,
        "completion_window": completion_window,
        "metadata": dict(metadata or {}),
        "model": model,
        "project": stored_project(project),
        "models": sorted(models) if models is not None and len(models) > 1 else None,
        "input_tokens": dict(input_tokens) if input_tokens else None,
        "output_expires_after": output_expires_after,
    }
    context = {MAX_COMPLETION_WINDOW_CONTEXT: max_completion_window_s}
    return BatchManifest.model_validate(fields, context=context)
