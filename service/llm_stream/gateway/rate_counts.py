"""Request counts that hold across gateway replicas: ``limits``' memory storage, plus what the
other replicas counted.

``limits``' sliding-window counter keeps a count per key and per clock-aligned window (the
minute now and the one before), so every replica names a window alike. Each replica counts its
own requests here and publishes the counts that changed (``rate_sync``); the others' arrive as
``heard`` and are added to every read, so the limiter's decision weighs every replica's
requests. What is held is bounded by the keys active in the last two windows, times replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from limits.aio.storage import MemoryStorage

#: How often expired counts of other replicas are swept (reads skip them meanwhile).
_SWEEP_EVERY_S = 10.0


class SharedCounts(MemoryStorage):
    """This replica's counts (``limits``' memory storage) and the last the others reported."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        #: counter key -> replica -> (count, expires at, Unix seconds)
        self._peers: dict[str, dict[str, tuple[int, float]]] = {}
        #: Counter keys whose count changed since ``take_changed``.
        self._changed: set[str] = set()
        self._swept_at = clock()

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        own = await super().incr(key, expiry, amount)
        self._changed.add(key)
        return own + self.peer_count(key)

    async def decr(self, key: str, amount: int = 1) -> int:
        own = await super().decr(key, amount)
        self._changed.add(key)
        return own + self.peer_count(key)

    async def get(self, key: str) -> int:
        return await super().get(key) + self.peer_count(key)

    def peer_count(self, key: str) -> int:
        """What the other replicas counted under ``key`` and reported, unexpired."""
        reported = self._peers.get(key)
        if not reported:
            return 0
        now = self._clock()
        return sum(count for count, expires_at in reported.values() if expires_at > now)

    def take_changed(self) -> list[tuple[str, int, float]]:
        """``(key, count, expires_at)`` of each own count changed since the last call."""
        changed, self._changed = self._changed, set()
        return [
            (key, self.storage.get(key, 0), self.expirations.get(key, self._clock()))
            for key in sorted(changed)
        ]

    def heard(self, replica: str, key: str, count: int, expires_at: float) -> None:
        """Another replica's count under ``key``; its latest report replaces its earlier."""
        now = self._clock()
        if expires_at > now:
            self._peers.setdefault(key, {})[replica] = (count, expires_at)
        elif (reported := self._peers.get(key)) is not None:
            reported.pop(replica, None)
        if now - self._swept_at >= _SWEEP_EVERY_S:
            self._sweep(now)

    def peers_held(self) -> int:
        """Counter keys with reports of other replicas held (bounded by recent activity)."""
        return len(self._peers)

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key in list(self._peers):
            live = {r: found for r, found in self._peers[key].items() if found[1] > now}
            if live:
                self._peers[key] = live
            else:
                del self._peers[key]
