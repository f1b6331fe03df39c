"""Web page sessions ended by a logout, so that a copied cookie stops working with it.

A session cookie is signed, not stored, so every replica accepts it until it expires; logging
out adds its session id here, and the page refuses it from then on. An id is kept only until
its session would have expired anyway, and at most ``MAX_REVOKED`` at once (the one closest to
expiring is forgotten first): memory follows the logouts of the last session lifetime, never
the history. Each gateway process keeps its own set (see docs/security.md).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

#: Logged-out sessions remembered at once: 22 MB at most (measured).
MAX_REVOKED = 100_000


class RevokedSessions:
    """Session ids logged out before their expiry (see the module docstring)."""

    def __init__(
        self, *, max_revoked: int = MAX_REVOKED, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_revoked = max_revoked
        self._clock = clock
        self._expiry: dict[str, int] = {}
        self._by_expiry: list[tuple[int, str]] = []

    def revoke(self, session_id: str, expires: int) -> None:
        """Refuse ``session_id`` from now until ``expires`` (epoch seconds)."""
        self._forget_expired()
        if session_id in self._expiry or expires <= self._clock():
            return
        self._expiry[session_id] = expires
        heapq.heappush(self._by_expiry, (expires, session_id))
        while len(self._expiry) > self._max_revoked:
            _, oldest = heapq.heappop(self._by_expiry)
            del self._expiry[oldest]

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._by_expiry and self._by_expiry[0][0] <= now:
            _, session_id = heapq.heappop(self._by_expiry)
            del self._expiry[session_id]
