"""A batch object in a given status, for the tests of the commands that print or judge one."""

from __future__ import annotations

from typing import Any

from llm_stream.contracts import BatchObject, BatchStatus, RequestCounts


def batch_in(status: str) -> BatchObject:
    """Batch ``batch_1`` (one request, none done) in ``status``."""
    fields: dict[str, Any] = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/completions",
        "completion_window": "24h",
        "status": BatchStatus(status),
        "created_at": 0,
        "request_counts": RequestCounts(total=1, completed=0, failed=0),
        "metadata": {},
    }
    return BatchObject.model_validate(fields)
