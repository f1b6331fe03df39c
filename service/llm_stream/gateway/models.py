"""The gateway's request and response bodies: OpenAI's, field for field.

Responses are what ``openai.types`` parse (``FileObject``, ``Batch``, ``FileDeleted``, cursor
pages); the tests validate them against those types. A batch object comes from the status
topic and is completed here with what only the gateway knows: the upload it was created from.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from llm_stream.contracts import (
    OPENAI_BATCH_ENDPOINTS,
    BatchObject,
    CompletionWindow,
    ExpiresAfter,
    Metadata,
)
from llm_stream.files.records import FilePurpose, StoredFile

T = TypeVar("T")


class FileObject(BaseModel):
    """OpenAI's file object (``openai.types.FileObject``)."""

    model_config = ConfigDict(title="File")

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    #: Deprecated by OpenAI, still required by its type: a stored file is always processed.
    status: Literal["uploaded", "processed", "error"] = "processed"
    #: When the file expires (its ``expires_after``, or the deployment's default); None: never.
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def of(cls, record: StoredFile) -> FileObject:
        return cls(
            id=record.id,
            bytes=record.bytes,
            created_at=record.created_at,
            filename=record.filename,
            purpose=record.purpose,
            expires_at=record.expires_at,
        )


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class Batch(BatchObject):
    """OpenAI's batch object (``openai.types.Batch``): the status topic's, with the
    ``input_file_id`` OpenAI requires (the upload's id for a batch created here), without
    its project (OpenAI's object has none; a key sees its own project's only)."""

    model_config = ConfigDict(title="Batch")

    input_file_id: str

    @classmethod
    def of(cls, batch: BatchObject, input_file_id: str) -> Batch:
        shown = batch.model_dump(exclude={"project"})
        return cls.model_validate({**shown, "input_file_id": input_file_id})


class BatchCreate(BaseModel):
    """``POST /v1/batches``: OpenAI's parameters; unknown ones are refused, as OpenAI does.

    The document states each rule the gateway holds a batch to; ``input_check`` applies the
    deployment's own, which may be tighter (settings ``batch_max_*``)."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str = Field(json_schema_extra={"enum": list(OPENAI_BATCH_ENDPOINTS)})
    completion_window: CompletionWindow = Field(
        description="Digits and a unit (s, m, h or d), as OpenAI's `24h`; at most the "
        "deployment's batch_max_completion_window_s (default 3 days)."
    )
    metadata: Metadata | None = Field(
        None, description="OpenAI's bounds, or the deployment's batch_max_metadata_* if lower."
    )
    output_expires_after: ExpiresAfter | None = Field(
        None,
        description="When the batch's output and error files expire: `seconds` (3600 to "
        "2592000) after each is written (anchor `created_at`); unset: the deployment's "
        "FILES_OUTPUT_EXPIRES_AFTER_S (none by default: kept until deleted).",
    )


class ListPage(BaseModel, Generic[T]):
    """OpenAI's cursor page: ask for the next with ``after=last_id`` while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchOutputPage(ListPage[dict[str, Any]]):
    """A batch's output and error lines so far (OpenAI's batch line shape, in the order the
    results topic holds them); ask for the next with ``after=next_after``. ``has_more``: the
    topic held more when the page was read; while the batch runs, more may come later."""

    next_after: str


class BatchResumed(BaseModel):
    """``POST /v1/batches/{id}/resume``: lines published again, and lines that had a result."""

    id: str
    object: Literal["batch.resume"] = "batch.resume"
    republished: int
    answered: int


class BatchLineError(BaseModel):
    """One problem of an input file (``openai.types.BatchError``); ``line`` counts from 1."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchLineError] = Field(default_factory=list)
