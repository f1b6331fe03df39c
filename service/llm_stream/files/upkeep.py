"""What a process does to the file store as it starts: remove the leftovers of writers that
stopped part way (their age tells them from writes in flight), and index the files stored
before the files' index existed. Both are best effort: a store that refuses is logged and
used as it is, never a reason not to start."""

from __future__ import annotations

import logging

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
