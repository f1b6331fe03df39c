"""Which file store a process opens, from the settings: above both stores, so that neither
store module imports the other."""

from __future__ import annotations

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
