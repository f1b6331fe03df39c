"""The OpenAI Batch API's limits on a batch, and the deployment's longest completion window."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BatchLimitSettings(BaseModel):
    """Bounds the gateway, ``submit`` and the client hold a new batch to."""

    # The OpenAI Batch API's limits on a batch (its input file and its metadata): the gateway
    # holds a batch to them; raised above OpenAI's values, they would let in batches that
    # ``batch.input_file`` and the manifest contract refuse.
    batch_max_file_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1,
        le=200 * 1024 * 1024,
        description="Largest batch input file (OpenAI: 200 MB); also the gateway's upload limit.",
    )
    batch_max_lines: int = Field(
        50_000, ge=1, le=50_000, description="Most request lines in one batch (OpenAI: 50,000)."
    )
    batch_max_metadata_pairs: int = Field(
        16, ge=0, le=16, description="Most metadata pairs on a batch (OpenAI: 16)."
    )
    batch_max_metadata_key_chars: int = Field(
        64, ge=1, le=64, description="Longest metadata key (OpenAI: 64 characters)."
    )
    batch_max_metadata_value_chars: int = Field(
        512, ge=0, le=512, description="Longest metadata value (OpenAI: 512 characters)."
    )
    # Not one of OpenAI's (it accepts only 24h): a window bounds how long an unfinished batch
    # holds back the aggregator's commits, so a batch cannot ask for an endless one.
    batch_max_completion_window_s: int = Field(
        3 * 86_400,
        ge=1,
        description="Longest completion window a batch may be created with (gateway, submit, "
        "client), in seconds; default 3 days.",
    )
