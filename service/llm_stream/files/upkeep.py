"""What processes do to the file store besides writing it: as one starts, remove the leftovers
of writers that stopped part way (their age tells them from writes in flight) and index the
files stored before the files' index existed (best effort: a store that refuses is logged and
used as it is, never a reason not to start); and, now and then, delete the files that expired.

Deleting is idempotent (``FileStore.delete_file``), so two processes sweeping at once, as
during a rebalance, delete each file once in effect."""

from __future__ import annotations

import logging

from llm_stream.files.expiry import SWEEP_LIMIT, due, entry_path
from llm_stream.files.store import FileStore

logger = logging.getLogger(__name__)


def index_existing(store: FileStore) -> int:
    """Index the files stored before the index existed, once per store (later calls find its
    marker); return how many. Concurrent callers write the same entries."""
    if store.index.is_built():
        return 0
    count = 0
    for record in store.scan_file_records():
        store.index.add(record)
        count += 1
    store.index.mark_built()
    return count


def prepare_store(store: FileStore, leftover_age_s: float) -> None:
    """At a process's start, best effort (a failure is logged, never fatal): remove leftovers
    of writers that stopped part way, and index files stored before the index existed."""
    try:
        if removed := store.tidy(leftover_age_s):
            logger.info("removed %d leftovers of unfinished writes from the file store", removed)
    except Exception:
        logger.warning("could not tidy the file store", exc_info=True)
    try:
        if indexed := index_existing(store):
            logger.info("indexed %d files stored before the files' index", indexed)
    except Exception:
        logger.warning("could not index the file store's earlier files", exc_info=True)


def sweep_expired(store: FileStore, now: float, limit: int = SWEEP_LIMIT) -> int:
    """Delete the files due by ``now`` (up to ``limit``); how many were deleted. An entry whose
    file is gone, or now expires later (written again), is only removed."""
    deleted = 0
    for expires_at, file_id in due(store.index.tree, now, limit):
        record = store.file_record(file_id)
        current = record is not None and record.expires_at == expires_at
        if current and store.delete_file(file_id):  # its entries go with it
            deleted += 1
            logger.info("deleted %s: it expired at %d", file_id, expires_at)
            continue
        store.index.tree.remove(entry_path(expires_at, file_id))
    return deleted
