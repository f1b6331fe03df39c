"""Settings that hold lists are read from one comma-separated environment variable."""

from __future__ import annotations

from typing import Any


def split_commas(value: Any) -> Any:
    """``LLM_STREAM_GATEWAY_API_KEYS=key1,key2``: keys, secrets, origins and (percent-encoded)
    URLs never hold commas or spaces."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value
