"""When stored files expire, and how often expired ones are deleted (``files.expiry``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from llm_stream.contracts import MAX_EXPIRES_AFTER_S, MIN_EXPIRES_AFTER_S


def _unset_or_within(seconds: int) -> int:
    if seconds and not MIN_EXPIRES_AFTER_S <= seconds <= MAX_EXPIRES_AFTER_S:
        raise ValueError(
            f"0 (never) or {MIN_EXPIRES_AFTER_S} to {MAX_EXPIRES_AFTER_S} seconds, OpenAI's bounds"
        )
    return seconds


class FileExpirySettings(BaseModel):
    """Read by the gateway (an upload's default expiry) and the aggregator (its batches' files'
    default expiry, and the sweep that deletes expired files)."""

    files_input_expires_after_s: int = Field(
        2_592_000,
        ge=0,
        description="Seconds after upload that a batch input file expires when the upload "
        "names no expires_after (OpenAI's default for purpose=batch: 30 days); 0: never.",
    )
    files_output_expires_after_s: int = Field(
        0,
        ge=0,
        description="Seconds after it is written that a batch's output or error file expires "
        "when the batch names no output_expires_after; 0 (the default): kept until deleted.",
    )
    files_expiry_sweep_s: float = Field(
        300.0,
        gt=0,
        description="How often the aggregator that owns results partition 0 deletes the files "
        "that expired (from disk or the bucket); a file past its expiry answers 404 at once.",
    )

    @field_validator("files_input_expires_after_s", "files_output_expires_after_s")
    @classmethod
    def _openai_bounds(cls, seconds: int) -> int:
        return _unset_or_within(seconds)
