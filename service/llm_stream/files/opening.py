"""Which file store a process opens, from the settings: above both stores, so that neither
store module imports the other; and a stored file's local copy for async callers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from llm_stream.files.store import FileStore, LocalFileStore
from llm_stream.files.upkeep import prepare_store
from llm_stream.settings import Settings


def open_store(settings: Settings) -> FileStore:
    """The store ``settings`` name: object storage for an ``s3://`` ``storage_url``, else the
    ``output_dir``. Every process that shares files (aggregators, gateways) opens it here, and
    prepares it (``files.upkeep.prepare_store``)."""
    store: FileStore
    if settings.storage_url is None:
        store = LocalFileStore(settings.output_dir)
    else:
        from llm_stream.files.s3 import S3FileStore  # boto3 is imported only where S3 is used

        store = S3FileStore.from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
    prepare_store(store, settings.store_leftover_age_s)
    return store


@asynccontextmanager
async def local_copy(store: FileStore, file_id: str) -> AsyncIterator[Path]:
    """``store.local_copy`` entered and left in worker threads (it may download)."""
    manager = store.local_copy(file_id)
    path = await asyncio.to_thread(manager.__enter__)
    try:
        yield path
    except BaseException:
        if not await asyncio.to_thread(manager.__exit__, *sys.exc_info()):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)
