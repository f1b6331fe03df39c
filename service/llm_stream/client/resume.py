"""Resuming a batch that cannot finish (``aggregator.stalls``): publish again, under the same
batch id, exactly the request lines whose ``custom_id`` has no result on the results topic.

The lines come from the batch's input kept in the file store (the gateway's upload; ``submit``
keeps its file there too unless ``SUBMIT_KEEP_INPUT=false``); which have a result is read from
the batch's partition of the results topic (``kafka.result_scan``). A line whose result the
topic lost but the aggregator still holds is published again too: the aggregator keeps one
result per ``custom_id``, so the files hold each line once whatever arrives twice. Each line
carries the batch's deadline, priority and project as when it was submitted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from llm_stream.batch.input_file import read_requests
from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.manifests import build_manifest
from llm_stream.client.publishing import LineSender, batch_line_headers
from llm_stream.contracts import BatchManifest, BatchObject
from llm_stream.errors import LlmStreamError
from llm_stream.files.opening import local_copy
from llm_stream.files.store import FileStore
from llm_stream.kafka.result_scan import ResultScanner
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Results read per page of the batch's partition.
_PAGE = 5000
_ANY_WINDOW_S = 10**9


class ResumeRefusedError(LlmStreamError, ValueError):
    """The batch cannot be resumed: unknown, ended, or its input was not kept."""


@dataclass(frozen=True)
class Resumed:
    """What a resume did: lines published again, and lines that had a result."""

    batch_id: str
    republished: int
    answered: int


async def resume_batch(
    settings: Settings, client: BatchClient, store: FileStore, batch_id: str
) -> Resumed:
    """Publish the batch's lines that have no result; ``ResumeRefusedError`` says why not."""
    batch = await client.retrieve(batch_id)
    if batch is None:
        raise ResumeRefusedError(f"no batch {batch_id!r} on the batch-status topic")
    if batch.status in TERMINAL_STATUSES or batch.status is BatchStatus.CANCELLING:
        raise ResumeRefusedError(f"batch {batch_id} is {batch.status}: there is nothing to resume")
    upload = await asyncio.to_thread(store.linked_input, batch_id)
    if upload is None or await asyncio.to_thread(store.file_record, upload) is None:
        raise ResumeRefusedError(
            f"batch {batch_id}'s input was not kept in the file store (submitted with "
            "SUBMIT_KEEP_INPUT=false, by a producer of its own, or the file expired): "
            "publish its missing lines again yourself, or submit it anew"
        )
    answered = await answered_custom_ids(settings, batch)
    sender = LineSender(
        await client.producer(),
        client.config,
        batch_id,
        project=batch.project,
        headers=batch_line_headers(_manifest_of(batch)),
    )
    try:
        async with local_copy(store, upload) as path:
            for line in read_requests(path, settings.batch_max_line_bytes):
                if line.get("custom_id") not in answered:
                    await sender.send(line)
            republished = await sender.flush()
    except BaseException:
        await sender.abandon()
        raise
    logger.info(
        "resumed batch %s: %d lines published again, %d had a result",
        batch_id,
        republished,
        len(answered),
        extra={"batch_id": batch_id},
    )
    return Resumed(batch_id, republished, len(answered))


async def answered_custom_ids(settings: Settings, batch: BatchObject) -> set[str]:
    """The ``custom_id`` of every result of the batch on the results topic."""
    scanner = ResultScanner(settings)
    answered: set[str] = set()
    try:
        after = None
        while True:
            page = await scanner.page(
                batch.id, created_at=batch.created_at, after=after, limit=_PAGE
            )
            answered.update(result.custom_id for result in page.results)
            if not page.has_more:
                return answered
            after = page.next_offset
    finally:
        await scanner.close()


def _manifest_of(batch: BatchObject) -> BatchManifest:
    """What the lines' headers are made of (deadline, priority) as the manifest had them; its
    window was held to the bound of its day, not today's settings."""
    return build_manifest(
        batch.id,
        endpoint=batch.endpoint,
        request_count=batch.request_counts.total or 1,
        metadata=batch.metadata,
        completion_window=batch.completion_window,
        max_completion_window_s=_ANY_WINDOW_S,
    ).model_copy(update={"created_at": batch.created_at})
