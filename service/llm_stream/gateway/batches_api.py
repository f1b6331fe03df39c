"""``/v1/batches``: create a batch from an uploaded file, list, retrieve and cancel batches.

Creating one validates its input file with the rules ``llm-stream submit`` applies; a file that
breaks one gets a ``failed`` batch with an error per bad line, published to the status topic
and nothing to the requests topic. A valid file is submitted with ``BatchClient.submit``, its
lines streamed from the store. Every batch object is read back from the status topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from opentelemetry.trace import SpanKind

from llm_stream.batch.input_file import read_requests
from llm_stream.batch.objects import batch_object
from llm_stream.batch.result_lines import output_line
from llm_stream.batch.status import BatchStatus
from llm_stream.client.manifests import build_manifest, new_batch_id
from llm_stream.client.resume import ResumeRefusedError
from llm_stream.contracts import BatchObject, RequestCounts, WorkerAnnouncement, is_safe_batch_id
from llm_stream.files.opening import local_copy
from llm_stream.files.store import BatchFile, file_id
from llm_stream.gateway.callers import Caller, CallerDep
from llm_stream.gateway.errors import GatewayError, error_responses, invalid, not_found
from llm_stream.gateway.files_api import visible_record
from llm_stream.gateway.input_check import check_input_file, check_parameters, unserved_endpoint
from llm_stream.gateway.models import (
    Batch,
    BatchCreate,
    BatchErrors,
    BatchLineError,
    BatchOutputPage,
    BatchResumed,
    ListPage,
)
from llm_stream.gateway.models_api import served_models
from llm_stream.gateway.pagination import unknown_after
from llm_stream.gateway.state import Gateway, GatewayDep
from llm_stream.ops import metrics, telemetry
from llm_stream.ops.logs import REQUEST_ID

router = APIRouter(prefix="/v1/batches", tags=["batches"])

#: Lines per page of ``GET /v1/batches/{id}/output``; its cursors name a results offset.
MAX_OUTPUT_PAGE = 1000
DEFAULT_OUTPUT_PAGE = 100
OUTPUT_CURSOR_PREFIX = "offset-"
#: OpenAI's bounds on ``GET /v1/batches?limit=``.
MAX_BATCHES_PAGE = 100
DEFAULT_BATCHES_PAGE = 20

#: The errors a route answers besides those of every route (``errors.EVERY_ROUTE``): each
#: reads the status topic, which answers 503 while the broker does not.
_INVALID_OR_UNKNOWN = error_responses(
    HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE
)
_UNKNOWN = error_responses(HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE)


@router.post("", responses=_INVALID_OR_UNKNOWN)
async def create_batch(
    gateway: GatewayDep, caller: CallerDep, request: BatchCreate, http: Request
) -> Batch:
    """Validate the input file, then submit its lines to the stream (or record why not).

    One SERVER span, a child of the caller's ``traceparent``, holds the submission: each
    request line's send span, and so its worker and engine spans, join the caller's trace.
    """
    batch_id = new_batch_id()
    with telemetry.tracer().start_as_current_span(
        "POST /v1/batches",
        context=telemetry.context_from_headers(http.headers),
        kind=SpanKind.SERVER,
        attributes={
            "llm_stream.batch_id": batch_id,
            "http.request.method": "POST",
            "http.request.header.x-request-id": [REQUEST_ID.get() or ""],
        },
    ):
        return await _create_batch(gateway, caller, request, batch_id)


async def _create_batch(
    gateway: Gateway, caller: Caller, request: BatchCreate, batch_id: str
) -> Batch:
    """A batch of the caller's project, from one of its project's files, within its quotas
    (``quotas``: past one, a ``failed`` batch with OpenAI's error)."""
    metadata = request.metadata or {}
    check_parameters(
        batch_id,
        endpoint=request.endpoint,
        completion_window=request.completion_window,
        metadata=metadata,
        settings=gateway.settings,
    )
    record = await visible_record(gateway, caller, request.input_file_id, "input_file_id")
    if record.purpose != "batch":
        raise invalid(
            f"File {record.id} has purpose '{record.purpose}': a batch needs a 'batch' file",
            "input_file_id",
        )
    await asyncio.to_thread(gateway.store.link_input, batch_id, record.id)
    workers = await _live_workers(gateway)
    served = set(await served_models(gateway)) if gateway.settings.route_by_model else None
    async with local_copy(gateway.store, record.id) as path:
        check = await asyncio.to_thread(
            check_input_file,
            path,
            batch_id=batch_id,
            endpoint=request.endpoint,
            settings=gateway.settings,
            served=served,
        )
        errors = check.errors
        routed = list(check.models) if gateway.settings.route_by_model else None
        if (unserved := unserved_endpoint(request.endpoint, workers, routed)) is not None:
            errors = [unserved, *errors]
        async with gateway.quota_turns.admit(
            gateway.stream, gateway.keys.limits(), caller.project, check.input_tokens
        ) as refused:
            if not errors and refused is not None:
                errors = [refused]
            if errors:
                failed = _failed(gateway, caller, batch_id, request, record.id, errors)
                await gateway.stream.publish(failed)
            else:
                await gateway.stream.submit(
                    read_requests(path, gateway.settings.batch_max_line_bytes),
                    batch_id=batch_id,
                    endpoint=request.endpoint,
                    metadata=metadata,
                    completion_window=request.completion_window,
                    request_count=check.request_count,
                    project=caller.creates_for,
                    models=list(check.models),
                    input_tokens=check.input_tokens,
                    output_expires_after=request.output_expires_after,
                )
                submitted = sum(check.input_tokens.values())
                metrics.GATEWAY_SUBMITTED_TOKENS.labels(caller.project).inc(submitted)
    metrics.GATEWAY_BATCHES_CREATED.labels("failed" if errors else "submitted").inc()
    created = await gateway.stream.retrieve(batch_id)
    if created is None:  # published with acks from every replica: never, short of a bug
        raise RuntimeError(f"batch {batch_id} was published but cannot be read back")
    return await respond(gateway, created)


async def _live_workers(gateway: Gateway) -> list[WorkerAnnouncement] | None:
    """The live workers, whose endpoints a batch's must be among; None when the workers topic
    is not readable now (routing by model, ``served_models`` answers 503 for that instead)."""
    try:
        return await gateway.stream.live_workers()
    except GatewayError:
        return None


def _failed(
    gateway: Gateway,
    caller: Caller,
    batch_id: str,
    request: BatchCreate,
    input_file_id: str,
    errors: list[BatchLineError],
) -> BatchObject:
    """A batch whose file broke a rule: ``failed`` at once, no request submitted (OpenAI's
    counts for it are zeros)."""
    manifest = build_manifest(
        batch_id,
        endpoint=request.endpoint,
        request_count=1,
        metadata=request.metadata,
        completion_window=request.completion_window,
        max_completion_window_s=gateway.settings.batch_max_completion_window_s,
        project=caller.creates_for,
    )
    failed = batch_object(
        manifest,
        BatchStatus.FAILED,
        reached_at={BatchStatus.FAILED: int(time.time())},
        errors=BatchErrors(data=errors).model_dump(),
    )
    nothing = RequestCounts(total=0, completed=0, failed=0)
    return failed.model_copy(update={"request_counts": nothing, "input_file_id": input_file_id})


@router.get("", responses=_INVALID_OR_UNKNOWN)
async def list_batches(
    gateway: GatewayDep,
    caller: CallerDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCHES_PAGE)] = DEFAULT_BATCHES_PAGE,
) -> ListPage[Batch]:
    """The caller's project's batches on the status topic (every project's for an admin),
    newest first (``created_at``, then id); ``after`` another project's batch is unknown."""
    page = await gateway.stream.page(limit=limit, after=after, project=caller.lists)
    if page is None:
        raise unknown_after(after or "")
    data = await respond_all(gateway, page.batches)
    return ListPage[Batch](
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=page.has_more,
    )


@router.get("/{batch_id}", responses=_UNKNOWN)
async def retrieve_batch(gateway: GatewayDep, caller: CallerDep, batch_id: str) -> Batch:
    return await respond(gateway, await visible_batch(gateway, caller, batch_id))


@router.get("/{batch_id}/output", responses=_INVALID_OR_UNKNOWN)
async def batch_output_so_far(
    gateway: GatewayDep,
    caller: CallerDep,
    batch_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_OUTPUT_PAGE)] = DEFAULT_OUTPUT_PAGE,
) -> BatchOutputPage:
    """The batch's output and error lines so far, while it runs: what the results topic holds,
    at least once (a line may repeat after a worker failed; the files hold each ``custom_id``
    once, and are where a finished batch's lines are read)."""
    batch = await visible_batch(gateway, caller, batch_id)
    page = await gateway.stream.results_so_far(
        batch.id, created_at=batch.created_at, after=_output_cursor(after), limit=limit
    )
    lines = [orjson.loads(output_line(result)) for result in page.results]
    return BatchOutputPage(
        data=lines,
        first_id=lines[0]["id"] if lines else None,
        last_id=lines[-1]["id"] if lines else None,
        has_more=page.has_more,
        next_after=f"{OUTPUT_CURSOR_PREFIX}{page.next_offset}",
    )


def _output_cursor(after: str | None) -> int | None:
    """The offset a ``next_after`` cursor names; 400 for anything else."""
    if after is None:
        return None
    digits = after.removeprefix(OUTPUT_CURSOR_PREFIX)
    if not after.startswith(OUTPUT_CURSOR_PREFIX) or not digits.isascii() or not digits.isdigit():
        raise invalid(f"Invalid 'after': {after[:80]!r} is no cursor this list gave", "after")
    if len(digits) > 19:
        raise invalid("Invalid 'after': the cursor is out of range", "after")
    return int(digits)


@router.post("/{batch_id}/cancel", responses=_UNKNOWN)
async def cancel_batch(gateway: GatewayDep, caller: CallerDep, batch_id: str) -> Batch:
    """Ask the stream to stop the batch: ``cancelling`` until the aggregator writes it as
    ``cancelled``; a batch that already ended is answered as it is."""
    await visible_batch(gateway, caller, batch_id)  # first: another project's is not asked
    batch = await gateway.stream.cancel(batch_id)
    if batch is None:  # retired meanwhile
        raise not_found("Batch", batch_id)
    return await respond(gateway, batch)


@router.post(
    "/{batch_id}/resume",
    responses=error_responses(
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.FORBIDDEN,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.SERVICE_UNAVAILABLE,
    ),
)
async def resume_batch(gateway: GatewayDep, caller: CallerDep, batch_id: str) -> BatchResumed:
    """Publish again the lines of a stalled batch that have no result (an admin's call: it
    sends work to the workers on the batch's behalf). 400 when the batch has ended or its
    input was not kept."""
    if not caller.admin:
        raise GatewayError(
            HTTPStatus.FORBIDDEN,
            "Resuming a batch needs an admin key",
            type="invalid_request_error",
            code="permission_denied",
        )
    await visible_batch(gateway, caller, batch_id)
    try:
        resumed = await gateway.stream.resume(batch_id, gateway.store)
    except ResumeRefusedError as error:
        raise invalid(str(error), "batch_id") from None
    return BatchResumed(id=batch_id, republished=resumed.republished, answered=resumed.answered)


async def visible_batch(gateway: Gateway, caller: Caller, batch_id: str) -> BatchObject:
    """The batch's latest object if ``caller`` may see it; another project's batch is
    answered 404 exactly as an unknown id is."""
    batch = await gateway.stream.retrieve(batch_id) if is_safe_batch_id(batch_id) else None
    if batch is None or not caller.sees(batch.project):
        raise not_found("Batch", batch_id)
    return batch


async def respond(gateway: Gateway, batch: BatchObject) -> Batch:
    """The batch as OpenAI's type: its input is the upload it was created from, if any."""
    return (await respond_all(gateway, [batch]))[0]


async def respond_all(gateway: Gateway, batches: Sequence[BatchObject]) -> list[Batch]:
    """``respond`` for each batch, with one look at the file store for those not seen lately."""
    links = await gateway.input_links.of([batch.id for batch in batches])
    return [Batch.of(batch, _input_of(batch, links.get(batch.id))) for batch in batches]


def _input_of(batch: BatchObject, linked: str | None) -> str:
    return linked or batch.input_file_id or file_id(batch.id, BatchFile.INPUT)
