"""A set of batch ids that remembers the most recent ones only.

What a process learns of past batches (written here, cancelled) saves it work later: a store
check, running a cancelled batch's leftover lines. Remembering all of them would grow with
history, so the oldest are forgotten past a limit; forgetting one costs only that saving again.
"""

from __future__ import annotations

from collections import OrderedDict

#: Ids remembered per set: ten thousand recent batches, about a megabyte.
RECENT_BATCHES = 10_000


class RecentIds:
    """Insertion-ordered ids; adding past ``limit`` forgets the oldest."""

    def __init__(self, limit: int = RECENT_BATCHES) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, batch_id: str) -> bool:
        """Remember ``batch_id``; True if it was not remembered already."""
        if batch_id in self._ids:
            return False
        self._ids[batch_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True

    def discard(self, batch_id: str) -> None:
        self._ids.pop(batch_id, None)

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._ids

    def ids(self) -> set[str]:
        return set(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
