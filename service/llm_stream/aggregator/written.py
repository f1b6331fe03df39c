"""What the aggregator reads back of a batch already written."""

from __future__ import annotations

import asyncio
import logging

from llm_stream.batch.status import CANCELLED_STATUSES
from llm_stream.contracts import BatchObject
from llm_stream.files.store import BatchFile, FileStore, file_id
from llm_stream.protocols import StatusPublisher

logger = logging.getLogger(__name__)


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
