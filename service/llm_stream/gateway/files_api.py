"""``/v1/files``: upload batch input files, list, retrieve, download and delete files.

Uploads are stored through the ``FileStore`` with their record beside them, so every replica
sharing the store sees them. A finished batch's output and error files are files here too
(purpose ``batch_output``), read through the same store under the ids its batch object names.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from llm_stream.contracts import MAX_EXPIRES_AFTER_S, MIN_EXPIRES_AFTER_S
from llm_stream.files.records import StoredFile, new_upload_id
from llm_stream.files.store import CHUNK_BYTES
from llm_stream.gateway.callers import Caller, CallerDep
from llm_stream.gateway.errors import error_responses, not_found, too_large
from llm_stream.gateway.models import FileDeleted, FileObject, ListPage
from llm_stream.gateway.pagination import page_of, unknown_after
from llm_stream.gateway.state import Gateway, GatewayDep
from llm_stream.ops import metrics

router = APIRouter(prefix="/v1/files", tags=["files"])

#: OpenAI's bounds on ``GET /v1/files?limit=``.
MAX_FILES_PAGE = 10_000


#: The errors a route answers besides those of every route (``errors.EVERY_ROUTE``).
_INVALID = error_responses(HTTPStatus.BAD_REQUEST)
_UNKNOWN = error_responses(HTTPStatus.NOT_FOUND)
_LISTED = error_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND)


@router.post("", responses=_INVALID)
async def create_file(
    gateway: GatewayDep,
    caller: CallerDep,
    # Binary as OpenAPI 3.0 spells it too: any bytes are a file's (its lines are checked later).
    file: Annotated[
        UploadFile,
        File(description="A JSONL batch input file.", json_schema_extra={"format": "binary"}),
    ],
    purpose: Annotated[
        Literal["batch"], Form(description="Only batch input files are stored here.")
    ],
    expires_anchor: Annotated[
        Literal["created_at"],
        Form(alias="expires_after[anchor]", description="OpenAI's expires_after: its anchor."),
    ] = "created_at",
    expires_seconds: Annotated[
        int | None,
        Form(
            alias="expires_after[seconds]",
            ge=MIN_EXPIRES_AFTER_S,
            le=MAX_EXPIRES_AFTER_S,
            description="Seconds after created_at that the file expires; absent: the "
            "deployment's default (OpenAI's 30 days unless FILES_INPUT_EXPIRES_AFTER_S says).",
            # A form field is absent or a number, never "null": the document says so.
            json_schema_extra={"type": "integer"},
        ),
    ] = None,
) -> FileObject:
    """Upload a batch input file of the caller's project; it is checked when a batch is
    created from it, and deleted when it expires."""
    limit = gateway.settings.batch_max_file_bytes
    if file.size is not None and file.size > limit:
        raise too_large(f"The file is {file.size} bytes, over the {limit}-byte limit")
    created_at = int(time.time())
    expires_after = expires_seconds or gateway.settings.files_input_expires_after_s
    record = await asyncio.to_thread(
        gateway.store.write_upload,
        new_upload_id(),
        _chunks(file),
        filename=file.filename or "input.jsonl",
        created_at=created_at,
        project=caller.creates_for,
        expires_at=created_at + expires_after if expires_after else None,
    )
    metrics.GATEWAY_UPLOAD_BYTES.inc(record.bytes)
    return FileObject.of(record)


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    """The spooled upload in pieces, read in the thread that stores them."""
    upload.file.seek(0)
    while chunk := upload.file.read(CHUNK_BYTES):
        yield chunk


@router.get("", responses=_LISTED)
async def list_files(
    gateway: GatewayDep,
    caller: CallerDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FILES_PAGE)] = MAX_FILES_PAGE,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> ListPage[FileObject]:
    """The caller's project's uploads and batch output files (every project's for an admin),
    by ``created_at`` (newest first unless ``asc``), read from the files' index a page at a
    time: the cost of a page, not of every file stored nor of other projects' files."""
    cursor = None
    if after is not None:
        cursor = await asyncio.to_thread(gateway.store.file_record, after)
        if cursor is None or not caller.sees(cursor.project):
            raise unknown_after(after)
    records = await asyncio.to_thread(
        gateway.store.index.page,
        purpose=purpose,
        descending=order == "desc",
        after=cursor,
        limit=limit + 1,
        project=caller.lists,
        now=time.time(),
    )
    files = [FileObject.of(record) for record in records]
    return page_of(files, limit=limit, id_of=lambda file: file.id)


@router.get("/{file_id}", responses=_UNKNOWN)
async def retrieve_file(gateway: GatewayDep, caller: CallerDep, file_id: str) -> FileObject:
    return FileObject.of(await visible_record(gateway, caller, file_id))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **_UNKNOWN},
)
async def file_content(gateway: GatewayDep, caller: CallerDep, file_id: str) -> StreamingResponse:
    """The file's bytes, streamed from the store."""
    await visible_record(gateway, caller, file_id)
    chunks = gateway.store.read_chunks(file_id)
    try:  # the first piece before answering: a file deleted meanwhile is still a 404
        first = await asyncio.to_thread(next, chunks, b"")
    except FileNotFoundError:
        raise not_found("File", file_id) from None
    return StreamingResponse(
        itertools.chain([first], chunks), media_type="application/octet-stream"
    )


@router.delete("/{file_id}", responses=_UNKNOWN)
async def delete_file(gateway: GatewayDep, caller: CallerDep, file_id: str) -> FileDeleted:
    await visible_record(gateway, caller, file_id)
    if not await asyncio.to_thread(gateway.store.delete_file, file_id):
        raise not_found("File", file_id)
    return FileDeleted(id=file_id, deleted=True)


async def visible_record(
    gateway: Gateway, caller: Caller, file_id: str, param: str = "id"
) -> StoredFile:
    """The file's record if ``caller`` may see it; another project's file, and one past its
    expiry (not yet swept), are answered 404 exactly as an unknown id is, as OpenAI answers
    a deleted file."""
    record = await asyncio.to_thread(gateway.store.file_record, file_id)
    if record is None or not caller.sees(record.project) or record.expired(time.time()):
        raise not_found("File", file_id, param=param)
    return record
