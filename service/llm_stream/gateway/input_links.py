"""Which upload each batch was created from, remembered for the batches read most recently.

A batch created through the gateway links its upload in the file store before its manifest is
published, and the link never changes: once the batch can be read, its link (or its lack of
one, for a batch submitted another way) is final. So a read need not ask the file store (a
file, or an object-storage request, per batch) again for a batch it answered lately, and asks
once for a whole list page's other batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cachetools import LRUCache

from llm_stream.files.store import FileStore

#: Batches whose link is remembered (a few hundred bytes each).
REMEMBERED = 4096


class InputLinks:
    """``FileStore.linked_input``, remembered for the ``REMEMBERED`` batches read last."""

    def __init__(self, store: FileStore, remembered: int = REMEMBERED) -> None:
        self._store = store
        self._known: LRUCache[str, str | None] = LRUCache(maxsize=remembered)

    async def of(self, batch_ids: Sequence[str]) -> dict[str, str | None]:
        """Each batch's linked upload (None: not created from one)."""
        links: dict[str, str | None] = {}
        missing: list[str] = []
        for batch_id in batch_ids:
            if batch_id in self._known:
                links[batch_id] = self._known[batch_id]
            else:
                missing.append(batch_id)
        if missing:
            found = await asyncio.to_thread(self._read, missing)
            links.update(found)
            self._known.update(found)
        return links

    def _read(self, batch_ids: Sequence[str]) -> dict[str, str | None]:
        return {batch_id: self._store.linked_input(batch_id) for batch_id in batch_ids}
