"""The aggregator's part in files that expire (``files.expiry``): a batch that names no
``output_expires_after`` gets the deployment's default for its files, and the aggregator that
owns results partition 0 deletes the files that expired, so one process sweeps per deployment
(a rebalance may briefly make it two: deleting is idempotent)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from llm_stream.contracts import BatchManifest, ExpiresAfter
from llm_stream.files.store import FileStore
from llm_stream.files.upkeep import sweep_expired
from llm_stream.ops import metrics

logger = logging.getLogger(__name__)


def with_default_expiry(manifest: BatchManifest, default_s: int) -> BatchManifest:
    """``manifest``, its files expiring ``default_s`` after they are written unless it says
    otherwise (0: the default is to keep them)."""
    if manifest.output_expires_after is not None or default_s <= 0:
        return manifest
    policy = ExpiresAfter(anchor="created_at", seconds=default_s)
    return manifest.model_copy(update={"output_expires_after": policy})


async def sweep_while_owner(
    store: FileStore, interval_s: float, is_sweeper: Callable[[], bool]
) -> None:
    """Every ``interval_s``, while ``is_sweeper()``, delete the files that expired; a failed
    sweep (the store refused) is logged and tried again next time."""
    while True:
        await asyncio.sleep(interval_s)
        if not is_sweeper():
            continue
        try:
            deleted = await asyncio.to_thread(sweep_expired, store, time.time())
        except Exception as error:
            logger.warning("deleting expired files failed: %r", error)
            continue
        if deleted:
            metrics.FILES_EXPIRED.inc(deleted)
            logger.info("deleted %d expired files", deleted)
