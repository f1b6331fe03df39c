"""A batch's files as the aggregator stores them, and what it reads back of a written batch."""

from __future__ import annotations

import asyncio
import logging

from llm_stream.aggregator.spool import PrivateSpool
from llm_stream.batch.status import CANCELLED_STATUSES
from llm_stream.contracts import BatchManifest, BatchObject
from llm_stream.files.store import BatchFile, FileStore, file_id, index_files
from llm_stream.protocols import StatusPublisher

logger = logging.getLogger(__name__)


def store_spooled_files(
    files: FileStore, spool: PrivateSpool, manifest: BatchManifest, *, with_errors: bool
) -> tuple[str, str | None]:
    """Store the output and error files from the spool (blocking) and index those the batch
    object will name (the error file only ``with_errors``), as its project's and with its
    expiry, before anyone is told the batch is done, so that whoever is told finds them
    listed. Returns their ids (the error file's None without errors)."""
    batch_id = manifest.batch_id
    output_id = files.write(batch_id, BatchFile.OUTPUT, spool.lines(batch_id, succeeded=True))
    error_id = files.write(batch_id, BatchFile.ERROR, spool.lines(batch_id, succeeded=False))
    named = [output_id, error_id] if with_errors else [output_id]
    policy = manifest.output_expires_after
    index_files(files, named, manifest.project, None if policy is None else policy.seconds)
    return output_id, named[1] if with_errors else None


async def republish_written(files: FileStore, status: StatusPublisher, batch_id: str) -> None:
    """A cancel came after the batch was written: publish its written object again, so that
    the status topic does not end on ``cancelling``. Best effort: a store or broker error here
    must not stop the cancel follower."""
    try:
        marker = await asyncio.to_thread(
            lambda: b"".join(files.read(file_id(batch_id, BatchFile.BATCH)))
        )
        written = BatchObject.model_validate_json(marker)
        if written.status not in CANCELLED_STATUSES:
            logger.info("batch %s was %s before its cancel came", batch_id, written.status)
            await status.publish_status(written)
    except Exception as error:
        logger.warning("batch %s: written object not republished: %r", batch_id, error)
